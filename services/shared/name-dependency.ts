/**
 * Which dependency a start-up (or CLI) failure came from, so its one line names the part and
 * the variable to check: `Connection error: connect ECONNREFUSED 127.0.0.1:1` alone does not
 * say whether that was Kafka or PostgreSQL. Classified once, here, by a table.
 */
import type { InfraConfig } from './infra-config.ts';

export interface Dependency {
  readonly part: string;
  /** The environment variable that points at it. */
  readonly variable: string;
}

const POSTGRES: Dependency = { part: 'PostgreSQL', variable: 'DATABASE_URL' };
const KAFKA: Dependency = { part: 'Kafka', variable: 'KAFKA_BROKERS' };
const REGISTRY: Dependency = { part: 'schema registry', variable: 'SCHEMA_REGISTRY_URL' };
const S3: Dependency = { part: 'S3', variable: 'S3_ENDPOINT' };

interface ErrorLike {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  severity?: unknown;
  $metadata?: unknown;
  address?: unknown;
  port?: unknown;
  cause?: unknown;
}

/** What each client's own errors look like; the first match wins. */
const BY_SHAPE: readonly [(e: ErrorLike, text: string) => boolean, Dependency][] = [
  // kafkajs: KafkaJSConnectionError, KafkaJSNumberOfRetriesExceeded, ...
  [(e) => typeof e.name === 'string' && e.name.startsWith('KafkaJS'), KAFKA],
  // The AWS SDK's errors carry $metadata; dataset-store.ts wraps them as ERR_DATASET_S3.
  [(e) => e.$metadata !== undefined || e.code === 'ERR_DATASET_S3', S3],
  // @kafkajs/confluent-schema-registry, and event-log.ts's registration errors.
  [
    (e, text) =>
      e.code === 'ERR_SCHEMA_REGISTRY' ||
      e.code === 'ERR_SCHEMA_INCOMPATIBLE' ||
      (typeof e.name === 'string' && e.name.startsWith('ConfluentSchemaRegistry')) ||
      (e.name === 'ResponseError' && /schema.?registry/i.test(text)),
    REGISTRY,
  ],
  // node-postgres: server errors carry a severity; its own timeouts have these messages.
  [
    (e, text) =>
      (typeof e.severity === 'string' && typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) ||
      /Connection terminated due to connection timeout|Query read timeout|^timeout expired$/.test(text),
    POSTGRES,
  ],
];

const hostPort = (url: string, fallbackPort: string): string | undefined => {
  try {
    const u = new URL(url);
    const port = u.port || (u.protocol === 'https:' ? '443' : fallbackPort);
    return `${u.hostname.replace(/^\[|\]$/g, '')}:${port}`;
  } catch {
    return undefined;
  }
};

/** host:port of every configured dependency, for network errors that name only an address. */
function endpoints(infra: InfraConfig): [string | undefined, Dependency][] {
  return [
    [hostPort(infra.databaseUrl, '5432'), POSTGRES],
    ...infra.kafkaBrokers.map((b): [string, Dependency] => [b.replace(/^\[|\](?=:)/g, ''), KAFKA]),
    [hostPort(infra.schemaRegistryUrl, '80'), REGISTRY],
    [hostPort(infra.s3.endpoint, '80'), S3],
  ];
}

/** The address a node network error names: its address/port fields, or its message. */
function addressOf(e: ErrorLike, text: string): string | undefined {
  if (typeof e.address === 'string' && (typeof e.port === 'number' || typeof e.port === 'string'))
    return `${e.address}:${e.port}`;
  return /\b(?:ECONNREFUSED|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)\s+\[?([^\s\]]+?)\]?:(\d+)\b/
    .exec(text)
    ?.slice(1)
    .join(':');
}

/**
 * The dependency `err` (or an error in its `cause` chain) came from, or undefined when it
 * does not say. `infra` lets a bare network error be matched by the address it names.
 */
export function nameDependency(err: unknown, infra?: InfraConfig): Dependency | undefined {
  const known = infra ? endpoints(infra) : [];
  for (let e = err, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const x = e as ErrorLike;
    const text = typeof x.message === 'string' ? x.message : '';
    const byShape = BY_SHAPE.find(([test]) => test(x, text));
    if (byShape) return byShape[1];
    const address = addressOf(x, text);
    const byAddress = address && known.find(([at]) => at === address);
    if (byAddress) return byAddress[1];
    e = x.cause;
  }
  return undefined;
}

/** "Kafka (check KAFKA_BROKERS): " for the front of a failure's line, or '' when unknown. */
export function dependencyPrefix(err: unknown, infra?: InfraConfig): string {
  const d = nameDependency(err, infra);
  return d ? `${d.part} (check ${d.variable}): ` : '';
}
