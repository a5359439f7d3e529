import type { RecordMetadata } from 'kafkajs';

export interface UnacknowledgedPartition {
  readonly topic: string;
  readonly partition: number;
  /** The broker's error code for it, or null when no answer named it at all. */
  readonly errorCode: number | null;
}

/**
 * Guards against a kafkajs 2.2.4 bug (producer/sendMessages.js): within one send(), answers
 * are kept per broker, and a retry only re-sends to brokers without an answer yet. When a
 * partition's leader moves to a broker that has already answered for other partitions, that
 * partition's records are never sent, and send() still resolves. So a resolved send is not
 * trusted alone: every partition written to must appear in the returned RecordMetadata with
 * errorCode 0, or the send counts as failed. The relay uses this function too.
 *
 * @param expected topic → partitions the send wrote to.
 * @returns the partitions without a clean answer; empty when the send is complete.
 */
export function findUnacknowledgedPartitions(
  expected: ReadonlyMap<string, ReadonlySet<number>>,
  answered: readonly RecordMetadata[],
): UnacknowledgedPartition[] {
  const missing: UnacknowledgedPartition[] = [];
  for (const [topic, partitions] of expected) {
    for (const partition of partitions) {
      const answers = answered.filter((m) => m.topicName === topic && m.partition === partition);
      if (answers.length > 0 && answers.every((m) => m.errorCode === 0)) continue;
      missing.push({
        topic,
        partition,
        errorCode: answers.find((m) => m.errorCode !== 0)?.errorCode ?? null,
      });
    }
  }
  return missing;
}
