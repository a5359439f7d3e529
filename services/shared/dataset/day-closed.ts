/**
 * Is a day closed, i.e. has the exporter made every record of it durable? Compaction and
 * backfill seal a day (write its manifest), so they must not run while records of it may
 * still come. Kafka record timestamps are the relay's send times: nearly in offset order,
 * out of order by at most `latenessMs` (default one hour) by assumption. So the day is closed
 * once the clock is past its end plus the lateness and, on every partition, the exporter's
 * committed offset has reached the first record stamped after that point (or the log end).
 */
import type { Admin } from 'kafkajs';

export interface DayClosedCheck {
  closed: boolean;
  /** Why not, for the operator. */
  reason?: string;
}

export function dayEndMs(dt: string): number {
  return Date.parse(`${dt}T00:00:00Z`) + 86_400_000;
}

/**
 * Pure decision on fetched offsets, per partition: the group's committed offset (-1: none),
 * the first offset after the day, and the log start (`low`). Records below the log start
 * are gone (retention), so a group that never committed there, or committed below it, has
 * nothing left to read below it: a partition that never had a record (0/0/0) or whose
 * records all expired is past the day, instead of holding compaction back for ever.
 */
export function decideDayClosed(
  dt: string,
  nowMs: number,
  latenessMs: number,
  partitions: { partition: number; committed: bigint; firstAfter: bigint; low?: bigint }[],
): DayClosedCheck {
  const cutoff = dayEndMs(dt) + latenessMs;
  if (nowMs < cutoff)
    return {
      closed: false,
      reason: `${dt} ends, with the lateness allowance, at ${new Date(cutoff).toISOString()}`,
    };
  const behind = partitions.filter(
    (p) => (p.low !== undefined && p.low > p.committed ? p.low : p.committed) < p.firstAfter,
  );
  if (behind.length > 0)
    return {
      closed: false,
      reason: `the exporter has not committed past ${dt} on partition(s) ${behind.map((p) => p.partition).join(', ')}`,
    };
  return { closed: true };
}

export async function checkDayClosed(opts: {
  admin: Admin;
  groupId: string;
  topic: string;
  dt: string;
  nowMs: number;
  latenessMs: number;
}): Promise<DayClosedCheck> {
  const cutoff = dayEndMs(opts.dt) + opts.latenessMs;
  if (opts.nowMs < cutoff) return decideDayClosed(opts.dt, opts.nowMs, opts.latenessMs, []);
  const [after, [committed]] = await Promise.all([
    opts.admin.fetchTopicOffsetsByTimestamp(opts.topic, cutoff),
    opts.admin.fetchOffsets({ groupId: opts.groupId, topics: [opts.topic] }),
  ]);
  const ends = await opts.admin.fetchTopicOffsets(opts.topic);
  const high = new Map(ends.map((p) => [p.partition, BigInt(p.high)]));
  const low = new Map(ends.map((p) => [p.partition, BigInt(p.low)]));
  const byPartition = new Map((committed?.partitions ?? []).map((p) => [p.partition, BigInt(p.offset)]));
  return decideDayClosed(
    opts.dt,
    opts.nowMs,
    opts.latenessMs,
    after.map((p) => ({
      partition: p.partition,
      committed: byPartition.get(p.partition) ?? -1n,
      // No record stamped after the cutoff yet: the exporter must have read to the log end.
      firstAfter: BigInt(p.offset) < 0n ? (high.get(p.partition) ?? 0n) : BigInt(p.offset),
      low: low.get(p.partition),
    })),
  );
}
