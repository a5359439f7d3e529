import type { Admin } from 'kafkajs';

export interface PartitionWatermarks {
  readonly partition: number;
  /** Next offset to be written (the high watermark). */
  readonly high: string;
  /** Oldest offset still in the log. */
  readonly low: string;
}

/**
 * Messages the group has not yet committed past, summed over partitions. A partition without
 * a committed offset ('-1') counts from the low watermark when the group starts from the
 * beginning (it will read all of it), and as 0 otherwise (it will start at the end). A
 * committed offset below the low watermark (retention deleted unread events) counts from the
 * low watermark: those events are gone, and the redelivery path must cover them.
 */
export function sumLag(
  committed: ReadonlyMap<number, string>,
  watermarks: readonly PartitionWatermarks[],
  fromBeginning: boolean,
): number {
  let lag = 0;
  for (const { partition, high, low } of watermarks) {
    const at = Number(committed.get(partition) ?? '-1');
    const start = at < 0 ? (fromBeginning ? Number(low) : Number(high)) : Math.max(at, Number(low));
    lag += Math.max(0, Number(high) - start);
  }
  return lag;
}

/** The group's lag on `topic`, from the brokers (works whether or not the consumer runs). */
export async function fetchLag(admin: Admin, groupId: string, topic: string, fromBeginning: boolean) {
  const [offsets, watermarks] = await Promise.all([
    admin.fetchOffsets({ groupId, topics: [topic] }),
    admin.fetchTopicOffsets(topic),
  ]);
  const committed = new Map<number, string>();
  for (const p of offsets.find((t) => t.topic === topic)?.partitions ?? [])
    committed.set(p.partition, p.offset);
  return sumLag(committed, watermarks, fromBeginning);
}
