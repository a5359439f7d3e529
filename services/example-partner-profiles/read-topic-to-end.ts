import { randomUUID } from 'node:crypto';
import type { Kafka, KafkaMessage } from 'kafkajs';

/**
 * Reads `topic` from its first retained offset up to the end offsets taken when the call
 * starts, handing every message to `onMessage`. A fresh consumer group each time (never
 * committed, deleted afterwards) so the read never starts from someone else's position:
 * a proof read must see the whole log as it is now. Rejects after `timeoutMs`.
 */
export async function readTopicToEnd(
  kafka: Kafka,
  topic: string,
  onMessage: (message: KafkaMessage, partition: number) => void,
  timeoutMs: number,
): Promise<void> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const offsets = await admin.fetchTopicOffsets(topic);
    const pending = new Map(
      offsets.filter((p) => BigInt(p.high) > BigInt(p.low)).map((p) => [p.partition, BigInt(p.high)]),
    );
    if (pending.size === 0) return;
    const groupId = `read-to-end-${randomUUID()}`;
    const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100 });
    await consumer.connect();
    let timer: NodeJS.Timeout | undefined;
    try {
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await new Promise<void>((resolve, reject) => {
        timer = setTimeout(
          () => reject(new Error(`reading ${topic} to its end took over ${timeoutMs} ms`)),
          timeoutMs,
        );
        consumer
          .run({
            autoCommit: false,
            eachBatch: async ({ batch }) => {
              for (const m of batch.messages) onMessage(m, batch.partition);
              const end = pending.get(batch.partition);
              // lastOffset() also covers offsets compaction removed (it falls back to the high
              // watermark for an empty batch), so a compacted tail still counts as the end.
              if (end !== undefined && BigInt(batch.lastOffset()) + 1n >= end)
                pending.delete(batch.partition);
              if (pending.size === 0) resolve();
            },
          })
          .catch(reject);
      });
    } finally {
      clearTimeout(timer);
      await consumer.disconnect();
      await admin.deleteGroups([groupId]).catch(() => undefined);
    }
  } finally {
    await admin.disconnect();
  }
}
