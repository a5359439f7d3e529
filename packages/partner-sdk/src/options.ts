import type { Kafka } from 'kafkajs';
import { DEFAULT_RETRY, type RetryPolicy } from './compute-backoff.ts';

/** What the handler receives. Identifier values are personal data: never log them. */
export interface ErasureEvent {
  readonly requestId: string;
  /** Unique per publication; a redelivery has its own. */
  readonly eventId: string;
  readonly identifiers: readonly { readonly type: string; readonly value: string }[];
  /** gdpr_art17, ccpa, account_deletion, …; treat an unknown reason like account_deletion. */
  readonly reason: string;
  readonly requestedAt: Date;
  /** The legal deadline of the whole request. */
  readonly deadline: Date;
  /** Set when the pipeline re-sent the event to this target alone; `attempt` 2 is the first redelivery. */
  readonly redelivery: { readonly attempt: number; readonly target: string } | null;
}

export interface HandlerResult {
  readonly status: 'deleted' | 'not_found';
  /** Evidence for the report (rows deleted, …). Never identifier values. */
  readonly detail?: string;
}

/** Throw to signal failure: the SDK retries, then dead-letters and acks `failed`. */
export type ErasureHandler = (event: ErasureEvent) => Promise<HandlerResult>;

/** Receives no identifier values or payloads from the SDK; `meta` holds ids, offsets, counts, codes. */
export interface PartnerLogger {
  /**
   * One line per acked event (event and request ids, status, attempts). Optional: the
   * default logger has none, because at thousands of events a second the line costs more
   * CPU than the rest of the SDK's work on the event (measured: 10 % of a partner process).
   * Counts are in `stats()` either way.
   */
  debug?(message: string, meta?: Record<string, unknown>): void;
  info(message: string, meta?: Record<string, unknown>): void;
  warn(message: string, meta?: Record<string, unknown>): void;
  error(message: string, meta?: Record<string, unknown>): void;
}

export interface ErasurePartnerOptions {
  /** This partner's target name, as registered with POST /v1/targets. Required. */
  target: string;
  /** Brokers to build a client from, or a kafkajs `Kafka` you configured (TLS, SASL). Required. */
  kafka: { brokers: string[]; clientId?: string } | Kafka;
  /** Confluent-compatible registry API, e.g. http://127.0.0.1:8081/apis/ccompat/v7. Required. */
  schemaRegistryUrl: string;
  handler: ErasureHandler;
  /** Consumer group. Default `erasure-partner.${target}`. */
  groupId?: string;
  /** Handler retries in process. Default 5 attempts, 200 ms initial, 10 000 ms max, ×2. */
  retry?: Partial<RetryPolicy>;
  /** Where events go after the last failed attempt. Default `privacy.erasure.dlq.${target}`. */
  deadLetterTopic?: string;
  /** Default: JSON lines on stdout/stderr. */
  logger?: PartnerLogger;
  /**
   * Where a group with no committed offset starts. Default true: a partner deployed after
   * events were published must still erase them (nothing is silently skipped); every
   * event in the topic's 14-day retention that is not for this target is skipped cheaply.
   */
  fromBeginning?: boolean;
  /** Consumer session timeout, milliseconds. Default 30 000. Lower detects a dead partner sooner. */
  sessionTimeoutMs?: number;
  /**
   * Longest a fetch waits on the broker for new events, milliseconds. Default 200. Offset
   * commits share the connection to the coordinator with fetches and queue behind a waiting
   * one, so this bounds how long an acked event stays uncommitted (kafkajs' own default, 5 000,
   * would leave each last-acked event uncommitted, and counted in lag, for up to 5 s). It is
   * also the most an event waits for `fetchMinBytes` to fill.
   */
  fetchMaxWaitMs?: number;
  /**
   * A fetch answers once this many bytes of events are there, or after `fetchMaxWaitMs`.
   * Default 65 536. Under load events then come in batches of hundreds instead of a few
   * each: fewer ack sends and commits per event, fewer fetches for the broker to answer.
   * When quiet an event waits at most `fetchMaxWaitMs`. 1 answers as soon as anything is there.
   */
  fetchMinBytes?: number;
  /** Partitions handled at once (each stays in order). Default 1. */
  partitionsConsumedConcurrently?: number;
  /**
   * Most acks published in one send (acks=-1), followed by one offset commit. Default 500.
   * Larger batches cost fewer round trips; a crash re-delivers at most this many events
   * (duplicate acks, which the pipeline dedupes).
   */
  ackBatchSize?: number;
  /**
   * How long a handler may run before the acks of the events before it are published
   * anyway, milliseconds. Default 100. Bounds how long a slow delete delays earlier acks.
   */
  ackLingerMs?: number;
  /** Event ids remembered as acked in this run. Default 10 000. */
  dedupeCapacity?: number;
  /** Injected for tests. Default Math.random. */
  random?: () => number;
  /** Injected for tests. Default wall clock. */
  now?: () => number;
}

export type ResolvedOptions = Readonly<
  Required<Omit<ErasurePartnerOptions, 'retry' | 'kafka'>> & {
    kafka: ErasurePartnerOptions['kafka'];
    retry: RetryPolicy;
  }
>;

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

/** Whole-number options and their ranges (inclusive). */
const INTEGER_RANGES = {
  ackBatchSize: [1, 10_000],
  ackLingerMs: [0, 60_000],
  fetchMinBytes: [1, 10_485_760],
  fetchMaxWaitMs: [10, 60_000],
} as const satisfies Partial<Record<keyof ErasurePartnerOptions, readonly [number, number]>>;

/** 10485760 → '10 485 760', as the README writes numbers. */
const spaced = (n: number) => String(n).replace(/\B(?=(\d{3})+$)/g, ' ');

const defaultLogger: PartnerLogger = {
  info: (message, meta) => console.log(JSON.stringify({ level: 'info', message, ...meta })),
  warn: (message, meta) => console.error(JSON.stringify({ level: 'warn', message, ...meta })),
  error: (message, meta) => console.error(JSON.stringify({ level: 'error', message, ...meta })),
};

/** Validates once, lists every problem together, fills defaults, freezes. */
export function resolveOptions(o: ErasurePartnerOptions): ResolvedOptions {
  const problems: string[] = [];
  if (typeof o.target !== 'string' || o.target.trim() === '') problems.push('target is required');
  if (!o.kafka) problems.push('kafka is required (brokers or a Kafka instance)');
  else if (!isKafka(o.kafka) && (!Array.isArray(o.kafka.brokers) || o.kafka.brokers.length === 0))
    problems.push('kafka.brokers needs at least one broker');
  if (typeof o.schemaRegistryUrl !== 'string' || !/^https?:\/\//.test(o.schemaRegistryUrl))
    problems.push('schemaRegistryUrl must be an http(s) URL');
  if (typeof o.handler !== 'function') problems.push('handler must be a function');
  const retry = { ...DEFAULT_RETRY, ...o.retry };
  if (!Number.isInteger(retry.attempts) || retry.attempts < 1) problems.push('retry.attempts must be ≥ 1');
  if (!(retry.initialMs >= 0) || !(retry.maxMs >= retry.initialMs))
    problems.push('retry needs 0 ≤ initialMs ≤ maxMs');
  if (!(retry.multiplier >= 1)) problems.push('retry.multiplier must be ≥ 1');
  for (const [name, [min, max]] of Object.entries(INTEGER_RANGES)) {
    const v = o[name as keyof typeof INTEGER_RANGES];
    if (v !== undefined && !(Number.isInteger(v) && v >= min && v <= max))
      problems.push(`${name} must be an integer from ${spaced(min)} to ${spaced(max)}`);
  }
  const deadLetterTopic = o.deadLetterTopic ?? `privacy.erasure.dlq.${o.target}`;
  if (!TOPIC_NAME.test(deadLetterTopic)) problems.push('deadLetterTopic must be 1-249 of [A-Za-z0-9._-]');
  if (problems.length > 0) throw new TypeError(`invalid erasure partner options: ${problems.join('; ')}`);
  return Object.freeze({
    target: o.target,
    kafka: o.kafka,
    schemaRegistryUrl: o.schemaRegistryUrl,
    handler: o.handler,
    groupId: o.groupId ?? `erasure-partner.${o.target}`,
    retry: Object.freeze(retry),
    deadLetterTopic,
    logger: o.logger ?? defaultLogger,
    fromBeginning: o.fromBeginning ?? true,
    sessionTimeoutMs: o.sessionTimeoutMs ?? 30_000,
    fetchMaxWaitMs: o.fetchMaxWaitMs ?? 200,
    fetchMinBytes: o.fetchMinBytes ?? 65_536,
    partitionsConsumedConcurrently: o.partitionsConsumedConcurrently ?? 1,
    ackBatchSize: o.ackBatchSize ?? 500,
    ackLingerMs: o.ackLingerMs ?? 100,
    dedupeCapacity: o.dedupeCapacity ?? 10_000,
    random: o.random ?? Math.random,
    now: o.now ?? Date.now,
  });
}

/** Duck-typed: a Kafka from another copy of kafkajs would fail `instanceof`. */
export function isKafka(k: ErasurePartnerOptions['kafka']): k is Kafka {
  return typeof (k as Kafka).consumer === 'function' && typeof (k as Kafka).producer === 'function';
}
