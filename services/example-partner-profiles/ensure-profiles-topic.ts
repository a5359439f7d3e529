import type { Admin } from 'kafkajs';
import { waitForTopicMetadata } from '../shared/event-log.ts';

/**
 * How long an erased value may stay on disk, milliseconds. A tombstone hides the value from
 * readers at once, but the old record stays in its segment until the log cleaner compacts
 * that segment; `max.compaction.lag.ms` forces that within this bound (1 day).
 */
export const MAX_COMPACTION_LAG_MS = 86_400_000;

/**
 * The profile store: compacted, so the log keeps each user's latest profile and a null value
 * (a tombstone) erases it. The active segment is never compacted, so it rolls hourly
 * (`segment.ms`) for the compaction bound to apply; tombstones themselves stay
 * `delete.retention.ms` (1 day), long enough for a reader that was behind to see the delete,
 * then go too, key included. Created with 3 partitions and replication up to 3 if missing;
 * an existing topic is left as it is. Returns whether this call created it.
 */
export async function ensureProfilesTopic(admin: Admin, topic: string): Promise<boolean> {
  if ((await admin.listTopics()).includes(topic)) return false;
  const brokers = (await admin.describeCluster()).brokers.length;
  const replicationFactor = Math.min(3, brokers);
  const configEntries = Object.entries({
    'cleanup.policy': 'compact',
    'max.compaction.lag.ms': String(MAX_COMPACTION_LAG_MS),
    'segment.ms': '3600000',
    'delete.retention.ms': '86400000',
    'min.insync.replicas': String(Math.min(2, replicationFactor)),
  }).map(([name, value]) => ({ name, value }));
  // false when another process created it between listTopics and here: the same outcome.
  const created = await admin.createTopics({
    waitForLeaders: false,
    topics: [{ topic, numPartitions: 3, replicationFactor, configEntries }],
  });
  // Usable before we go on (kafkajs' waitForLeaders gives up on a fresh broker's first answers).
  await waitForTopicMetadata(admin, [topic]);
  return created;
}
