import { Partitioners, type Message, type Producer } from 'kafkajs';
import { ErasureError } from '../shared/errors.ts';
import { TOPICS, toCompletedEvent, toRequestedEvent, type EventCodec } from '../shared/event-codec.ts';
import type { OutboxRow } from './claim-outbox-batch.ts';
import { findUnacknowledgedPartitions } from '../../packages/partner-sdk/src/find-unacknowledged-partitions.ts';
import type { PartitionLookup } from '../../packages/partner-sdk/src/partition-lookup.ts';

/** The batch was not (or not provably) written to Kafka; every row in it is retried. */
export class RelayPublishError extends ErasureError {
  constructor(message: string, detail?: Record<string, unknown>) {
    super('ERR_RELAY_PUBLISH', message, 500, true, detail);
  }
}

/** Outbox JSON → Avro value, per topic. A topic missing here is never guessed at. */
export type EventEncoders = Readonly<Record<string, (payload: Record<string, unknown>) => object>>;

export const DEFAULT_ENCODERS: EventEncoders = Object.freeze({
  [TOPICS.requested]: toRequestedEvent,
  [TOPICS.completed]: toCompletedEvent,
});

export interface PublishDeps {
  /**
   * Idempotent, maxInFlightRequests 1 (see index.ts): retries neither duplicate nor reorder.
   * A ProducerHolder (replaceable-producer.ts): a send that throws in `run` costs its producer, replaced by a new one
   * (a reused sequence range would be acknowledged as a duplicate and not written).
   */
  readonly producer: { run<T>(use: (producer: Pick<Producer, 'sendBatch'>) => Promise<T>): Promise<T> };
  readonly codec: Pick<EventCodec, 'encode'>;
  readonly partitions: PartitionLookup;
  readonly encoders?: EventEncoders;
  /** Broker-side wait for all in-sync replicas, in milliseconds. Default 10 000. */
  readonly ackTimeoutMs?: number;
}

export interface PublishOutcome {
  /** Written and acknowledged by every in-sync replica. */
  readonly published: OutboxRow[];
  /** Not sent, with why (codes and kinds, never payload values): retried after a backoff. */
  readonly rejected: { row: OutboxRow; reason: string }[];
}

/** Kafka's Java-compatible murmur2 partitioner, the one kafkajs uses by default. */
const partitionOf = Partitioners.DefaultPartitioner();

/**
 * Encodes and sends one claimed batch in a single sendBatch call with acks=all. Partitions
 * are assigned here with the default partitioner, so the relay knows exactly which
 * partitions the send must answer for (findUnacknowledgedPartitions, shared with the partner SDK). A row that
 * cannot be encoded is rejected alone, and so is every later row for the same subject,
 * so the subject's events are never published out of order. Throws RelayPublishError when
 * the send fails or is incomplete: then nothing in the batch counts as published.
 */
export async function publishBatch(deps: PublishDeps, rows: readonly OutboxRow[]): Promise<PublishOutcome> {
  const encoders = deps.encoders ?? DEFAULT_ENCODERS;
  const published: OutboxRow[] = [];
  const rejected: PublishOutcome['rejected'] = [];
  const failedKeys = new Set<string>();
  const byTopic = new Map<string, Message[]>();
  const expected = new Map<string, Set<number>>();

  for (const row of rows) {
    const reject = (reason: string) => {
      rejected.push({ row, reason });
      failedKeys.add(row.eventKey);
    };
    if (failedKeys.has(row.eventKey)) {
      reject('ERR_RELAY_HELD_BACK: held back behind an earlier event for the same subject');
      continue;
    }
    const toValue = encoders[row.topic];
    if (!toValue) {
      reject(`ERR_RELAY_UNKNOWN_TOPIC: no encoder for topic ${row.topic}`);
      continue;
    }
    let value: Buffer;
    try {
      value = await deps.codec.encode(row.topic, toValue(row.payload));
    } catch (err) {
      // Only the error's class: avsc and registry messages quote the offending value.
      reject(`ERR_RELAY_ENCODE: the payload could not be encoded (${(err as Error)?.name ?? 'Error'})`);
      continue;
    }
    let partitionMetadata;
    try {
      partitionMetadata = await deps.partitions.partitionsFor(row.topic);
    } catch (err) {
      // The cluster, not the row: the whole batch waits (later rows may share its subjects).
      throw kafkaFailure('partition metadata unavailable', err);
    }
    const message: Message = { key: row.eventKey, value };
    message.partition = partitionOf({ topic: row.topic, partitionMetadata, message });
    byTopic.set(row.topic, [...(byTopic.get(row.topic) ?? []), message]);
    expected.set(row.topic, (expected.get(row.topic) ?? new Set()).add(message.partition));
    published.push(row);
  }
  if (published.length === 0) return { published, rejected };

  try {
    // Inside `run`: an answer that does not cover every partition costs the producer too.
    await deps.producer.run(async (producer) => {
      const answered = await producer.sendBatch({
        acks: -1,
        timeout: deps.ackTimeoutMs ?? 10_000,
        topicMessages: [...byTopic].map(([topic, messages]) => ({ topic, messages })),
      });
      const missing = findUnacknowledgedPartitions(expected, answered);
      if (missing.length > 0) {
        throw new RelayPublishError(
          `send resolved but ${missing.length} partition(s) were not acknowledged`,
          {
            missing,
          },
        );
      }
    });
  } catch (err) {
    deps.partitions.forget();
    throw err instanceof RelayPublishError ? err : kafkaFailure('send failed', err);
  }
  return { published, rejected };
}

/** kafkajs messages name topics and brokers, never keys or values, so they are kept. */
function kafkaFailure(what: string, err: unknown): RelayPublishError {
  const e = err as { name?: string; type?: string; message?: string; retriable?: boolean };
  const kind = [e.name ?? 'Error', e.type].filter(Boolean).join(' ');
  return new RelayPublishError(`${what}: ${kind}: ${String(e.message ?? '').slice(0, 300)}`, {
    kafkaError: e.name,
    kafkaType: e.type,
    retriable: e.retriable,
  });
}
