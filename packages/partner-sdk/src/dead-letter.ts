import type { Admin, IHeaders, KafkaMessage } from 'kafkajs';
import { waitForTopicMetadata } from '../../../services/shared/event-log.ts';

/**
 * The dead-letter topic holds the original bytes, identifiers included, so its retention is
 * bounded like the requested topic's (14 days): long enough for a person to replay, never a
 * permanent copy of personal data. One partition: dead letters are rare and are read by a
 * person or a replay script, so parallelism buys nothing, and one partition keeps them in
 * the order they failed. Replication factor is the broker default (-1).
 */
const DLQ_RETENTION_MS = 14 * 24 * 60 * 60 * 1000;

/** Creates the topic when missing; answers whether this call created it. */
export async function ensureDeadLetterTopic(admin: Admin, topic: string): Promise<boolean> {
  if ((await admin.listTopics()).includes(topic)) return false;
  const created = await admin.createTopics({
    waitForLeaders: false,
    topics: [
      {
        topic,
        numPartitions: 1,
        configEntries: [
          { name: 'cleanup.policy', value: 'delete' },
          { name: 'retention.ms', value: String(DLQ_RETENTION_MS) },
        ],
      },
    ],
  });
  // Usable before we go on (kafkajs' waitForLeaders gives up on a fresh broker's first answers).
  await waitForTopicMetadata(admin, [topic]);
  return created;
}

export interface DeadLetterCause {
  /** Already free of identifier values (describeError). */
  readonly error: string;
  readonly attempts: number;
  readonly target: string;
  readonly sourceTopic: string;
  readonly partition: number;
  readonly offset: string;
  readonly eventId?: string;
  readonly requestId?: string;
  readonly failedAt: number;
}

/** Header names a replay tool reads; values are strings. */
export const DLQ_HEADERS = {
  error: 'x-erasure-error',
  attempts: 'x-erasure-attempts',
  target: 'x-erasure-target',
  sourceTopic: 'x-erasure-source-topic',
  partition: 'x-erasure-source-partition',
  offset: 'x-erasure-source-offset',
  eventId: 'x-erasure-event-id',
  requestId: 'x-erasure-request-id',
  failedAt: 'x-erasure-failed-at',
} as const;

/** The original message, byte for byte (key and value), plus why it is here. */
export function deadLetterMessage(original: KafkaMessage, cause: DeadLetterCause) {
  const headers: IHeaders = { ...original.headers };
  for (const [field, header] of Object.entries(DLQ_HEADERS)) {
    const v = cause[field as keyof DeadLetterCause];
    if (v !== undefined) headers[header] = String(v);
  }
  return { key: original.key, value: original.value, headers };
}
