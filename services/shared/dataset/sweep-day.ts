/**
 * The sweep of a day (`erasure dataset sweep --from D --to D`, and every compaction and
 * backfill for the days it writes, a compaction also for the days before it): deletes the
 * day's `superseded` files whose grace period is over, drops them from the manifest, and
 * keeps `_SUCCESS` true to its meaning.
 *
 * `_SUCCESS` means: this directory's `*.parquet` files are exactly the manifest's files, so
 * a Hadoop/Spark-style reader that waits for it and reads `dt=…/*.parquet` gets each row
 * once. Whoever adds a `.parquet` file to a day deletes the marker first (compaction and
 * backfill before they write anything for the day, the exporter before it uploads a late
 * file); only the sweep writes it, once no superseded file remains and a LIST shows
 * exactly the manifest's files. Races with a late exporter upload are closed from both
 * sides: the sweep LISTs again after writing the marker and deletes it if a file appeared,
 * and the exporter deletes the marker again after its upload, so one of the two sees the
 * other.
 *
 * The manifest is rewritten with the same generation and files (readers see no change),
 * only `superseded` shrinks. Like compaction it read-modify-writes the manifest, so a day is
 * swept, compacted or backfilled by one job at a time; the manifest is read again just
 * before the rewrite, which keeps a job that broke that rule from being undone silently.
 * Deleting a due file is safe whatever the manifest now says: no later generation lists a
 * name an earlier one superseded (generation files carry their generation; exporter files'
 * offsets are in the coverage, so the exporter does not write them again).
 */
import type { DatasetStore } from './dataset-store.ts';
import { deleteSuccessMarker, readManifest, writeManifest, type DayManifest } from './manifest.ts';
import { baseName, dayPrefix, SUCCESS_NAME } from './object-keys.ts';

export interface SweepOptions {
  store: DatasetStore;
  prefix: string;
  dt: string;
  /** Superseded files whose `deleteAfter` is at or before this (epoch ms) are deleted. */
  nowMs: number;
  progress?: (line: string) => void;
}

export interface SweepDayResult {
  dt: string;
  /** False when the day has no manifest (not sealed): nothing was done. */
  sealed: boolean;
  /** Superseded files deleted by this sweep. */
  deleted: number;
  /** Superseded files still within their grace period; the earliest deadline, if any. */
  pending: number;
  nextDeleteAfter?: string;
  /** True when `_SUCCESS` stands after the sweep. */
  success: boolean;
}

export async function sweepDay(o: SweepOptions): Promise<SweepDayResult> {
  const say = o.progress ?? (() => undefined);
  const dir = dayPrefix(o.prefix, o.dt);
  const m = await readManifest(o.store, o.prefix, o.dt);
  if (!m) return { dt: o.dt, sealed: false, deleted: 0, pending: 0, success: false };
  const isDue = (s: { deleteAfter: string }) => Date.parse(s.deleteAfter) <= o.nowMs;
  const due = m.superseded.filter(isDue);
  const pending = m.superseded.filter((s) => !isDue(s));
  const nextDeleteAfter = pending.map((s) => s.deleteAfter).sort()[0];
  const result: SweepDayResult = {
    dt: o.dt,
    sealed: true,
    deleted: 0,
    pending: pending.length,
    nextDeleteAfter,
    success: false,
  };
  let current: DayManifest = m;
  if (due.length > 0) {
    await o.store.delete(due.map((s) => `${dir}${s.name}`));
    result.deleted = due.length;
    const now = await readManifest(o.store, o.prefix, o.dt);
    if (!now || now.generation !== m.generation || now.writtenAt !== m.writtenAt) {
      // Another job replaced the manifest meanwhile; its superseded list is its own.
      say(
        `sweep ${o.dt}: ${due.length} superseded file(s) deleted; the manifest changed meanwhile, left as is`,
      );
      return result;
    }
    current = { ...m, superseded: pending };
    await writeManifest(o.store, o.prefix, current);
  }
  result.success = await settleSuccess(o.store, o.prefix, current);
  say(
    `sweep ${o.dt}: ${result.deleted} superseded file(s) deleted, ${pending.length} pending` +
      (nextDeleteAfter ? ` (until ${nextDeleteAfter})` : '') +
      `, _SUCCESS ${result.success ? 'written' : 'absent'}`,
  );
  return result;
}

const parquetNames = (keys: { key: string }[]) =>
  keys
    .map((x) => baseName(x.key))
    .filter((n) => n.endsWith('.parquet'))
    .sort();

const sameList = (a: readonly string[], b: readonly string[]) =>
  a.length === b.length && a.every((x, i) => x === b[i]);

/** Writes `_SUCCESS` if the directory's *.parquet are exactly `m`'s files, else deletes it. */
export async function settleSuccess(store: DatasetStore, prefix: string, m: DayManifest): Promise<boolean> {
  const dir = dayPrefix(prefix, m.dt);
  const want = m.files.map((f) => f.name).sort();
  const listed = await store.list(dir);
  const has = listed.some((x) => baseName(x.key) === SUCCESS_NAME);
  if (m.superseded.length > 0 || !sameList(parquetNames(listed), want)) {
    if (has) await deleteSuccessMarker(store, prefix, m.dt);
    return false;
  }
  if (has) return true;
  await store.put(`${dir}${SUCCESS_NAME}`, '', 'application/octet-stream');
  // A late exporter file may have landed between the LIST and the PUT: look again.
  if (!sameList(parquetNames(await store.list(dir)), want)) {
    await deleteSuccessMarker(store, prefix, m.dt);
    return false;
  }
  return true;
}

/** Sweeps each day in order; see sweepDay. */
export async function sweepDays(
  o: Omit<SweepOptions, 'dt'> & { days: readonly string[] },
): Promise<SweepDayResult[]> {
  const out: SweepDayResult[] = [];
  for (const dt of o.days) out.push(await sweepDay({ ...o, dt }));
  return out;
}
