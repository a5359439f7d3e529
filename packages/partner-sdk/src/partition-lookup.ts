import type { Admin, PartitionMetadata } from 'kafkajs';

export interface PartitionLookup {
  /** The topic's partitions (from a cache younger than maxAgeMs, else asked of the cluster). */
  partitionsFor(topic: string): Promise<PartitionMetadata[]>;
  /** Drops cached metadata, after a failed send: leaders or partition counts may have moved. */
  forget(): void;
}

/**
 * The relay (publish-batch.ts) and the SDK's verified producer assign partitions themselves,
 * so they need each topic's partitions. Cached because the pipeline's topics never change
 * partition count (ensureTopics refuses to, as it would re-map keys), and refreshed after
 * any failed send all the same.
 */
export function createPartitionLookup(
  admin: Pick<Admin, 'fetchTopicMetadata'>,
  opts: { maxAgeMs?: number; now?: () => number } = {},
): PartitionLookup {
  const maxAgeMs = opts.maxAgeMs ?? 60_000;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { at: number; partitions: PartitionMetadata[] }>();
  return {
    async partitionsFor(topic) {
      const hit = cache.get(topic);
      if (hit && now() - hit.at < maxAgeMs) return hit.partitions;
      const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
      const partitions = topics.find((t) => t.name === topic)?.partitions ?? [];
      if (partitions.length === 0) throw new Error(`topic ${topic} has no partitions`);
      cache.set(topic, { at: now(), partitions });
      return partitions;
    },
    forget: () => cache.clear(),
  };
}
