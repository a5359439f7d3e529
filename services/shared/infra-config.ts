/**
 * Where the pipeline finds its infrastructure. Read once from the environment,
 * validated, frozen. Every variable has a working local default that matches the
 * stack started by `npm run stack:up`; setting one points the pipeline (and the
 * stack scripts, which then start nothing for that part) at an existing service.
 */
export interface InfraConfig {
  /** postgres://user:password@host:port/db. Default: the local stack's database. */
  readonly databaseUrl: string;
  /** Kafka bootstrap servers. Default: ["127.0.0.1:9092"]. */
  readonly kafkaBrokers: readonly string[];
  /** How long PostgreSQL may take to connect and to answer a statement. */
  readonly databaseTimeouts: DatabaseTimeouts;
  /** Confluent-compatible schema registry base URL. Default: local Apicurio ccompat v7. */
  readonly schemaRegistryUrl: string;
  /**
   * SCHEMA_REGISTRY_TIMEOUT_MS: longest wait for one registry call, ms (100 to 600 000,
   * default 10 000). A registry that accepts connections and never answers fails the call
   * instead of hanging the service.
   */
  readonly schemaRegistryTimeoutMs: number;
  readonly s3: {
    readonly endpoint: string;
    readonly bucket: string;
    readonly accessKeyId: string;
    readonly secretAccessKey: string;
    readonly region: string;
    /** S3_CONNECT_TIMEOUT_MS: longest wait for a TCP connection, ms (100 to 600 000, default 10 000). */
    readonly connectTimeoutMs: number;
    /**
     * S3_SOCKET_TIMEOUT_MS: longest silence on a connection during a call, ms (1000 to
     * 3 600 000, default 30 000). An idle limit, not a cap on the whole call: a 128 MiB
     * upload on a slow link keeps sending and never trips it; a server that stops answering
     * does. The SDK retries a timed-out call (3 attempts in all).
     */
    readonly socketTimeoutMs: number;
  };
  /** Which parts the environment points elsewhere (so the local stack leaves them alone). */
  readonly external: {
    readonly postgres: boolean;
    readonly kafka: boolean;
    readonly registry: boolean;
    readonly s3: boolean;
  };
}

export interface DatabaseTimeouts {
  /**
   * DATABASE_CONNECT_TIMEOUT_MS: longest wait for a new connection, TCP and PostgreSQL's
   * start-up and authentication included, ms (100 to 600 000, default 10 000).
   */
  readonly connectMs: number;
  /**
   * DATABASE_QUERY_TIMEOUT_MS: longest wait for one statement's answer, measured by the
   * client, ms (0 = none, else 1000 to 86 400 000; default 60 000). A safety net against a
   * connection that stopped answering, far above the longest statement a service runs (a
   * relay claim of 10 000 rows, a 5 000-ack batch, a redelivery pass, a journal seal of
   * 5 000 entries take well under a few seconds). The server is not told; a statement that
   * times out is abandoned with its connection.
   */
  readonly queryMs: number;
}

/** The default of SCHEMA_REGISTRY_TIMEOUT_MS, ms (also the registry client's, schema-registry-client.ts). */
export const DEFAULT_REGISTRY_TIMEOUT_MS = 10_000;

export const LOCAL_DEFAULTS = Object.freeze({
  postgresUser: 'erasure',
  postgresPassword: 'erasure',
  postgresDatabase: 'erasure',
  postgresPort: 5432,
  kafkaPort: 9092,
  registryPort: 8081,
  s3Port: 9000,
  s3Bucket: 'erasure-dataset',
  s3AccessKeyId: 'erasure-local',
  s3SecretAccessKey: 'erasure-local-secret',
  s3Region: 'us-east-1',
});

// One error class per code: configuration problems are ConfigurationError everywhere.
import { ConfigurationError } from './errors.ts';
export { ConfigurationError as ConfigError };

type Env = Readonly<Record<string, string | undefined>>;

/**
 * STACK_PORT_OFFSET (default 0) shifts every local port, so a second local stack
 * (tests of the stack itself, the three-node Kafka failover test) can run beside the
 * first. It applies only to defaults; an explicit URL is taken as given.
 */
export function localPorts(env: Env, problems: string[] = []) {
  const raw = env['STACK_PORT_OFFSET'];
  const offset = raw === undefined || raw === '' ? 0 : Number(raw);
  if (!Number.isInteger(offset) || offset < 0 || offset > 45000) {
    problems.push('STACK_PORT_OFFSET must be a whole number from 0 to 45000');
  }
  const o = Number.isInteger(offset) ? offset : 0;
  return {
    ...LOCAL_DEFAULTS,
    postgresPort: LOCAL_DEFAULTS.postgresPort + o,
    kafkaPort: LOCAL_DEFAULTS.kafkaPort + o,
    registryPort: LOCAL_DEFAULTS.registryPort + o,
    s3Port: LOCAL_DEFAULTS.s3Port + o,
  };
}

function nonEmpty(env: Env, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function checkUrl(problems: string[], name: string, value: string, protocols: string[]): void {
  try {
    const u = new URL(value);
    if (!protocols.includes(u.protocol)) problems.push(`${name} must use ${protocols.join(' or ')}`);
  } catch {
    problems.push(`${name} is not a valid URL`);
  }
}

/** Reads the infrastructure settings; all problems are reported together. */
export function loadInfraConfig(env: Env): InfraConfig {
  const problems: string[] = [];
  const d = localPorts(env, problems);
  const databaseUrl =
    nonEmpty(env, 'DATABASE_URL') ??
    `postgres://${d.postgresUser}:${d.postgresPassword}@127.0.0.1:${d.postgresPort}/${d.postgresDatabase}`;
  checkUrl(problems, 'DATABASE_URL', databaseUrl, ['postgres:', 'postgresql:']);

  const databaseTimeouts = Object.freeze({
    connectMs: intSetting(env, problems, 'DATABASE_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000),
    queryMs: intSetting(env, problems, 'DATABASE_QUERY_TIMEOUT_MS', 60_000, 0, 86_400_000),
  });
  if (databaseTimeouts.queryMs > 0 && databaseTimeouts.queryMs < 1000)
    problems.push('DATABASE_QUERY_TIMEOUT_MS must be 0 (no limit) or at least 1000');

  const brokersRaw = nonEmpty(env, 'KAFKA_BROKERS') ?? `127.0.0.1:${d.kafkaPort}`;
  const kafkaBrokers = brokersRaw.split(',').map((b) => b.trim());
  for (const b of kafkaBrokers) {
    const m = /^[A-Za-z0-9.\-[\]:]+:(\d{1,5})$/.exec(b);
    if (!m) problems.push(`KAFKA_BROKERS entry "${b}" is not host:port`);
    else if (Number(m[1]) < 1 || Number(m[1]) > 65_535)
      problems.push(`KAFKA_BROKERS entry "${b}" has a port outside 1 to 65535`);
  }

  const schemaRegistryUrl = (
    nonEmpty(env, 'SCHEMA_REGISTRY_URL') ?? `http://127.0.0.1:${d.registryPort}/apis/ccompat/v7`
  ).replace(/\/+$/, '');
  checkUrl(problems, 'SCHEMA_REGISTRY_URL', schemaRegistryUrl, ['http:', 'https:']);
  const schemaRegistryTimeoutMs = intSetting(
    env,
    problems,
    'SCHEMA_REGISTRY_TIMEOUT_MS',
    DEFAULT_REGISTRY_TIMEOUT_MS,
    100,
    600_000,
  );

  const endpoint = nonEmpty(env, 'S3_ENDPOINT') ?? `http://127.0.0.1:${d.s3Port}`;
  checkUrl(problems, 'S3_ENDPOINT', endpoint, ['http:', 'https:']);
  const bucket = nonEmpty(env, 'S3_BUCKET') ?? d.s3Bucket;
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket))
    problems.push('S3_BUCKET is not a valid bucket name');
  const s3ConnectTimeoutMs = intSetting(env, problems, 'S3_CONNECT_TIMEOUT_MS', 10_000, 100, 600_000);
  const s3SocketTimeoutMs = intSetting(env, problems, 'S3_SOCKET_TIMEOUT_MS', 30_000, 1000, 3_600_000);

  if (problems.length > 0) throw new ConfigurationError(problems);
  return Object.freeze({
    databaseUrl,
    databaseTimeouts,
    kafkaBrokers: Object.freeze(kafkaBrokers),
    schemaRegistryUrl,
    schemaRegistryTimeoutMs,
    s3: Object.freeze({
      endpoint,
      bucket,
      accessKeyId: nonEmpty(env, 'AWS_ACCESS_KEY_ID') ?? d.s3AccessKeyId,
      secretAccessKey: nonEmpty(env, 'AWS_SECRET_ACCESS_KEY') ?? d.s3SecretAccessKey,
      region: nonEmpty(env, 'AWS_REGION') ?? d.s3Region,
      connectTimeoutMs: s3ConnectTimeoutMs,
      socketTimeoutMs: s3SocketTimeoutMs,
    }),
    external: Object.freeze({
      postgres: nonEmpty(env, 'DATABASE_URL') !== undefined,
      kafka: nonEmpty(env, 'KAFKA_BROKERS') !== undefined,
      registry: nonEmpty(env, 'SCHEMA_REGISTRY_URL') !== undefined,
      s3: nonEmpty(env, 'S3_ENDPOINT') !== undefined,
    }),
  });
}

/**
 * For service config loaders: reads the infrastructure settings, adding any problems to
 * the caller's list so every problem of a service's configuration is reported at once.
 */
export function collectInfraConfig(env: Env, problems: string[]): InfraConfig | undefined {
  try {
    return loadInfraConfig(env);
  } catch (err) {
    if (err instanceof ConfigurationError) {
      problems.push(...err.problems);
      return undefined;
    }
    throw err;
  }
}

/**
 * `raw` as a whole number in [min, max] (decimal digits, surrounding blanks ignored), or
 * undefined. One rule for environment settings and command-line flags alike.
 */
export function parseWholeNumber(raw: string, min: number, max: number): number | undefined {
  const t = raw.trim();
  const n = /^\d+$/.test(t) ? Number(t) : NaN;
  return Number.isSafeInteger(n) && n >= min && n <= max ? n : undefined;
}

/**
 * A whole-number setting with its range, for service config loaders: an unset or blank
 * variable takes `fallback`; anything else out of range is added to `problems`.
 */
export function intSetting(
  env: Env,
  problems: string[],
  name: string,
  fallback: number,
  min: number,
  max: number,
): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = parseWholeNumber(raw, min, max);
  if (v === undefined) problems.push(`${name} must be a whole number from ${min} to ${max}`);
  return v ?? fallback;
}

/**
 * A true/false setting, for service config loaders: `true` or `false` in any case; an
 * unset or blank variable takes `fallback`. Anything else (`0`, `no`, `off`) is added to
 * `problems` rather than read as either: a switch read wrongly changes where a consumer
 * group starts.
 */
export function boolSetting(env: Env, problems: string[], name: string, fallback: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const v = raw.trim().toLowerCase();
  if (v === 'true') return true;
  if (v === 'false') return false;
  problems.push(`${name} must be true or false`);
  return fallback;
}
