/**
 * The event log's contract at start-up: topics from `schemas/topics.json` and Avro value
 * schemas from `schemas/avro/<topic>.avsc`, created and registered idempotently so every
 * process can run this on start and two processes can run it at once.
 */
import { readFile, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import avro from 'avsc';
// kafkajs is CommonJS and Node cannot see ConfigResourceTypes as a named export.
import kafkajs, { type Admin } from 'kafkajs';
import { ErasureError } from './errors.ts';
import { DEFAULT_REGISTRY_TIMEOUT_MS } from './infra-config.ts';

/** `schemas/topics.json` or an `.avsc` file is malformed; every problem is listed at once. */
export class EventLogContractError extends ErasureError {
  constructor(readonly problems: string[]) {
    super('ERR_EVENT_LOG_CONTRACT', `invalid event-log contract: ${problems.join('; ')}`, 500, false);
  }
}

/** The registry refused a schema as incompatible with the subject's latest version. */
export class SchemaIncompatibleError extends ErasureError {
  constructor(subject: string, compatibility: string, registryMessage: string) {
    const topic = subject.replace(/-value$/, '');
    const next = /\.v(\d+)$/.test(topic)
      ? topic.replace(/\.v(\d+)$/, (_m, n: string) => `.v${Number(n) + 1}`)
      : `${topic}.v2`;
    super(
      'ERR_SCHEMA_INCOMPATIBLE',
      `schema for subject "${subject}" is not ${compatibility} compatible with its latest registered ` +
        `version; a published schema only evolves compatibly (add fields with defaults), so to break ` +
        `compatibility add a new topic version (${next}) instead of changing this one`,
      500,
      false,
      // The registry's diff names fields, never values; kept out of the message all the same.
      { subject, registryMessage },
    );
  }
}

/** Any other registry failure. Retriable when the registry was unreachable or answered 5xx. */
export class SchemaRegistryError extends ErasureError {
  constructor(message: string, retriable: boolean, detail?: Record<string, unknown>) {
    super('ERR_SCHEMA_REGISTRY', message, 500, retriable, detail);
  }
}

export interface TopicDefinition {
  readonly name: string;
  /** Why the topic is configured as it is (retention above all). */
  readonly doc: string;
  readonly partitions: number;
  /** Production replication factor; capped at the broker count when a topic is created. */
  readonly replicationFactor: number;
  /** Topic configs as Kafka takes them (strings). `min.insync.replicas` is capped at the replication factor. */
  readonly config: Readonly<Record<string, string>>;
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const positiveInt = (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0;

/** Reads and validates `<dir>/topics.json`. Retention must be bounded: the log must not keep personal data forever. */
export async function loadTopicDefinitions(dir: string): Promise<TopicDefinition[]> {
  const file = join(dir, 'topics.json');
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new EventLogContractError([`${file}: ${err instanceof Error ? err.message : String(err)}`]);
  }
  const problems: string[] = [];
  const topics = isObject(raw) && Array.isArray(raw['topics']) ? raw['topics'] : undefined;
  if (!topics || topics.length === 0)
    throw new EventLogContractError([`${file}: needs a non-empty "topics" array`]);
  const defs: TopicDefinition[] = [];
  const seen = new Set<string>();
  topics.forEach((t: unknown, i) => {
    const at = isObject(t) && typeof t['name'] === 'string' ? `topic "${t['name']}"` : `topics[${i}]`;
    const bad = (why: string) => problems.push(`${file}: ${at} ${why}`);
    if (!isObject(t)) return bad('must be an object');
    const { name, doc, partitions, replicationFactor, config } = t;
    if (typeof name !== 'string' || !TOPIC_NAME.test(name)) bad('needs a name of 1-249 [A-Za-z0-9._-]');
    else if (seen.has(name)) bad('is defined twice');
    else seen.add(name);
    if (typeof doc !== 'string' || doc.trim() === '') bad('needs a doc saying why it is configured so');
    if (!positiveInt(partitions)) bad('needs "partitions", a whole number above 0');
    if (!positiveInt(replicationFactor)) bad('needs "replicationFactor", a whole number above 0');
    const entries: Record<string, string> = {};
    if (!isObject(config)) bad('needs a "config" object');
    else {
      for (const [k, v] of Object.entries(config)) {
        if (['string', 'number', 'boolean'].includes(typeof v)) entries[k] = String(v);
        else bad(`config "${k}" must be a string, number or boolean`);
      }
      const retention = Number(entries['retention.ms']);
      if (!positiveInt(retention)) bad('needs a bounded "retention.ms" (milliseconds above 0, never -1)');
      // compact keeps each key's last value forever: personal data would never leave the log.
      if (entries['cleanup.policy'] !== 'delete') bad('needs "cleanup.policy": "delete"');
      const isr = entries['min.insync.replicas'];
      if (isr !== undefined && !positiveInt(Number(isr))) bad('min.insync.replicas must be above 0');
    }
    // Only returned when no topic has a problem, so the unchecked fields are checked by then.
    defs.push({
      name,
      doc,
      partitions,
      replicationFactor,
      config: Object.freeze(entries),
    } as TopicDefinition);
  });
  if (problems.length > 0) throw new EventLogContractError(problems);
  return defs;
}

/** The configs a topic should have at replication factor `rf`. */
function effectiveConfig(def: TopicDefinition, rf: number): Record<string, string> {
  const config = { ...def.config };
  // Never above the replication factor: with acks=all every write would fail. Equal to it
  // (2 brokers) trades availability for durability, which suits us: the outbox in
  // Postgres holds events while Kafka refuses writes; a lost event is worse than a late one.
  const isr = config['min.insync.replicas'];
  if (isr !== undefined) config['min.insync.replicas'] = String(Math.min(Number(isr), rf));
  return config;
}

/** Metadata errors a topic created a moment ago answers until every broker knows it. */
const NOT_YET = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'LEADER_NOT_AVAILABLE']);

/**
 * The topics' metadata once every partition has a leader, retrying the transient answers
 * of a just-created topic for up to `timeoutMs` (default 30 s); other errors are thrown.
 */
export async function waitForTopicMetadata(
  admin: Admin,
  names: readonly string[],
  timeoutMs = 30_000,
): Promise<Awaited<ReturnType<Admin['fetchTopicMetadata']>>['topics']> {
  const deadline = Date.now() + timeoutMs;
  for (let delayMs = 100; ; delayMs = Math.min(delayMs * 2, 2000)) {
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [...names] });
      const leaderless = topics.some((t) => t.partitions.some((p) => p.leader < 0));
      if (!leaderless) return topics;
      if (Date.now() > deadline) throw new Error(`topics without a leader after ${timeoutMs} ms`);
    } catch (err) {
      const type = (err as { type?: string }).type;
      if (!type || !NOT_YET.has(type) || Date.now() > deadline) throw err;
    }
    await new Promise((resolve) => setTimeout(resolve, delayMs));
  }
}

export interface EnsureTopicsOptions {
  /** Brokers in the cluster; caps the replication factor. Default: asked of the cluster (describeCluster). */
  brokerCount?: number;
}

/**
 * Creates missing topics; reports how existing ones differ from their definition
 * (partitions, replication factor, every configured key) without changing them, since
 * adding partitions re-maps keys and shortening retention deletes data: a person decides.
 */
export async function ensureTopics(
  admin: Admin,
  defs: readonly TopicDefinition[],
  opts: EnsureTopicsOptions = {},
): Promise<{ created: string[]; drift: string[] }> {
  const brokerCount = opts.brokerCount ?? (await admin.describeCluster()).brokers.length;
  const existing = new Set(await admin.listTopics());
  const created: string[] = [];
  for (const def of defs.filter((d) => !existing.has(d.name))) {
    const rf = Math.min(def.replicationFactor, brokerCount);
    // One topic per call: createTopics answers false when the topic already exists (another
    // process won the race), which only tells us whose it was when there is one topic.
    const configEntries = Object.entries(effectiveConfig(def, rf)).map(([name, value]) => ({ name, value }));
    const topic = { topic: def.name, numPartitions: def.partitions, replicationFactor: rf, configEntries };
    if (await admin.createTopics({ waitForLeaders: false, topics: [topic] })) created.push(def.name);
  }
  // Every topic usable before we return: a new topic reaches the broker's metadata a moment
  // after CreateTopics answers, and kafkajs' waitForLeaders gives up on the
  // UNKNOWN_TOPIC_OR_PARTITION a fresh KRaft broker answers meanwhile.
  const metadata = await waitForTopicMetadata(
    admin,
    defs.map((d) => d.name),
  );

  const toCheck = defs.filter((d) => !created.includes(d.name));
  if (toCheck.length === 0) return { created, drift: [] };
  const topics = metadata.filter((t) => toCheck.some((d) => d.name === t.name));
  const { resources } = await admin.describeConfigs({
    includeSynonyms: false,
    resources: toCheck.map((d) => ({
      type: kafkajs.ConfigResourceTypes.TOPIC,
      name: d.name,
      configNames: Object.keys(d.config),
    })),
  });
  const drift: string[] = [];
  for (const def of toCheck) {
    // fetchTopicMetadata throws for a topic that is gone, so every name is found.
    const partitions = topics.find((t) => t.name === def.name)?.partitions ?? [];
    const rf = Math.min(...partitions.map((p) => p.replicas.length));
    if (partitions.length !== def.partitions)
      drift.push(`${def.name}: ${partitions.length} partitions, defined ${def.partitions}`);
    const wantRf = Math.min(def.replicationFactor, brokerCount);
    if (rf < wantRf) drift.push(`${def.name}: replication factor ${rf}, defined ${wantRf}`);
    const actual = resources.find((r) => r.resourceName === def.name)?.configEntries ?? [];
    for (const [key, want] of Object.entries(effectiveConfig(def, rf))) {
      const got = actual.find((e) => e.configName === key)?.configValue;
      if (got !== want) drift.push(`${def.name}: ${key} is ${got ?? '(unset)'}, defined ${want}`);
    }
  }
  return { created, drift };
}

const KEY_ORDER =
  'type name namespace doc fields items values symbols default logicalType size aliases order'.split(' ');

/**
 * One text per schema, whatever the file's whitespace or key order: keys in a fixed order
 * per node, others sorted, arrays (fields, symbols, unions) kept in order since order is
 * meaningful there. Not Avro's Parsing Canonical Form, which drops docs and defaults.
 */
export function canonicalAvro(schemaJson: object): string {
  const order = (node: unknown): unknown => {
    if (Array.isArray(node)) return node.map(order);
    if (!isObject(node)) return node;
    const keys = Object.keys(node);
    const known = KEY_ORDER.filter((k) => keys.includes(k));
    const rest = keys.filter((k) => !KEY_ORDER.includes(k)).sort();
    // fromEntries defines own properties, so even a "__proto__" key survives.
    return Object.fromEntries([...known, ...rest].map((k) => [k, order(node[k])]));
  };
  return JSON.stringify(order(schemaJson));
}

export interface RegisterSchemasOptions {
  /** Subject compatibility set before registering. Default BACKWARD: consumers upgrade first. */
  compatibility?: 'BACKWARD' | 'BACKWARD_TRANSITIVE';
  /** Per registry request, ms. Default DEFAULT_REGISTRY_TIMEOUT_MS (SCHEMA_REGISTRY_TIMEOUT_MS). */
  timeoutMs?: number;
}

export interface RegisteredSchema {
  topic: string;
  subject: string;
  id: number;
}

/**
 * Registers `<dir>/<topic>.avsc` under `<topic>-value` (topic-name strategy) in canonical
 * form, so an unchanged schema gets its existing id back (Apicurio stores text as sent).
 * Every file is validated before the registry is touched.
 */
export async function registerSchemas(
  registryUrl: string,
  dir: string,
  opts: RegisterSchemasOptions = {},
): Promise<RegisteredSchema[]> {
  const compatibility = opts.compatibility ?? 'BACKWARD';
  const timeoutMs = opts.timeoutMs ?? DEFAULT_REGISTRY_TIMEOUT_MS;
  const files = (await readdir(dir)).filter((f) => f.endsWith('.avsc')).sort();
  if (files.length === 0) throw new EventLogContractError([`${dir}: no .avsc files`]);
  const problems: string[] = [];
  const schemas: { topic: string; text: string }[] = [];
  for (const file of files) {
    const topic = basename(file, '.avsc');
    try {
      if (!TOPIC_NAME.test(topic)) throw new Error('file name is not <topic>.avsc');
      const json: unknown = JSON.parse(await readFile(join(dir, file), 'utf8'));
      if (!isObject(json)) throw new Error('not a JSON object');
      avro.Type.forSchema(json as avro.Schema);
      schemas.push({ topic, text: canonicalAvro(json) });
    } catch (err) {
      problems.push(`${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }
  if (problems.length > 0) throw new EventLogContractError(problems);

  const base = registryUrl.replace(/\/+$/, '');
  const call = async (method: string, path: string, body: object, subject: string): Promise<unknown> => {
    let res: Response;
    try {
      res = await fetch(`${base}${path}`, {
        method,
        headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new SchemaRegistryError(`schema registry unreachable (${method} ${path}): ${why}`, true);
    }
    const answer: unknown = await res.json().catch(() => undefined);
    if (res.ok) return answer;
    const message = isObject(answer) ? String(answer['message'] ?? '').slice(0, 500) : '';
    if (res.status === 409 && method === 'POST')
      throw new SchemaIncompatibleError(subject, compatibility, message);
    throw new SchemaRegistryError(
      `schema registry answered ${res.status} to ${method} ${path}`,
      res.status >= 500 || res.status === 429,
      { subject, status: res.status, registryMessage: message },
    );
  };

  const registered: RegisteredSchema[] = [];
  for (const { topic, text } of schemas) {
    const subject = `${topic}-value`;
    const path = `/subjects/${encodeURIComponent(subject)}`;
    // Compatibility first, so even the second version ever registered is checked.
    await call('PUT', `/config/${encodeURIComponent(subject)}`, { compatibility }, subject);
    const answer = await call('POST', `${path}/versions`, { schema: text }, subject);
    const id = isObject(answer) ? answer['id'] : undefined;
    if (!positiveInt(id)) throw new SchemaRegistryError(`registry gave no schema id for ${subject}`, false);
    registered.push({ topic, subject, id });
  }
  return registered;
}
