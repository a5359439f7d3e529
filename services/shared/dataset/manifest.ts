/**
 * A day's manifest, `<prefix>/dt=YYYY-MM-DD/_manifest.json`: the reader protocol.
 *
 * Readers: GET the manifest; if there is none, the day is not complete yet (the exporter may
 * still be writing it) and a reader that needs the whole day waits. Otherwise read exactly
 * the objects in `files` (names relative to the day directory) and nothing else in the
 * directory: files not listed are exporter output not yet compacted, superseded files kept
 * for a grace period, or leftovers of an interrupted compaction. Each manifest replaces the
 * previous one in a single PutObject, so a reader sees either the old complete list or the
 * new one; files a manifest lists stay readable for at least `graceMs` after it is replaced
 * (they are deleted only by a sweep past `superseded[].deleteAfter`, sweep-day.ts), so a
 * reader that fetched the old manifest finishes its scan. `_SUCCESS`, for tools that look
 * for Hadoop's marker, means more: the directory's `*.parquet` files are exactly the
 * manifest's files (no superseded or late file beside them). Only the sweep writes it;
 * whoever adds a file to a sealed day deletes it first (deleteSuccessMarker).
 */
import type { DatasetStore } from './dataset-store.ts';
import {
  dayPrefix,
  MANIFEST_NAME,
  parseExporterFileName,
  SUCCESS_NAME,
  type ExporterFileName,
} from './object-keys.ts';

export const MANIFEST_FORMAT_VERSION = 1;

export interface ManifestFile {
  /** Object name within the day directory. */
  name: string;
  rows: number;
  bytes: number;
}

export interface DayManifest {
  formatVersion: number;
  schemaVersion: number;
  dt: string;
  /** Increases by one each time the day's manifest is replaced. */
  generation: number;
  /** 'compaction' or 'backfill': what wrote this generation. */
  writtenBy: 'compaction' | 'backfill';
  writtenAt: string;
  files: ManifestFile[];
  rows: number;
  /** Distinct events in the day. */
  events: number;
  /**
   * Kafka records already in `files`, as inclusive offset ranges per partition of `topic`.
   * The exporter skips records inside these ranges on a replay, so a day sealed by
   * compaction gets no second copy of them.
   */
  coverage: { topic: string; partitions: Record<string, [string, string][]> };
  /** Files replaced by this or an earlier generation, deleted after `deleteAfter` (ISO time). */
  superseded: { name: string; deleteAfter: string }[];
}

export function manifestKey(prefix: string, dt: string): string {
  return `${dayPrefix(prefix, dt)}${MANIFEST_NAME}`;
}

export async function readManifest(
  store: DatasetStore,
  prefix: string,
  dt: string,
): Promise<DayManifest | undefined> {
  const raw = await store.get(manifestKey(prefix, dt));
  if (!raw) return undefined;
  const m = JSON.parse(raw.toString('utf8')) as DayManifest;
  if (m.formatVersion !== MANIFEST_FORMAT_VERSION)
    throw new Error(
      `manifest of ${dt} has format version ${m.formatVersion}, expected ${MANIFEST_FORMAT_VERSION}`,
    );
  return m;
}

/**
 * Publishes a manifest (one PutObject: readers see the old one or this one). `_SUCCESS` is
 * the sweep's to write (sweep-day.ts): right after a compaction the replaced files are
 * still in the directory.
 */
export async function writeManifest(store: DatasetStore, prefix: string, m: DayManifest): Promise<void> {
  await store.put(manifestKey(prefix, m.dt), `${JSON.stringify(m, null, 1)}\n`, 'application/json');
}

/** Deletes the day's `_SUCCESS`: done before anything adds a `.parquet` file to the day. */
export async function deleteSuccessMarker(store: DatasetStore, prefix: string, dt: string): Promise<void> {
  await store.delete([`${dayPrefix(prefix, dt)}${SUCCESS_NAME}`]);
}

/** Inclusive offset ranges of one partition, as bigints. */
export function coveredRanges(
  m: DayManifest | undefined,
  topic: string,
  partition: number,
): [bigint, bigint][] {
  if (!m || m.coverage.topic !== topic) return [];
  return (m.coverage.partitions[String(partition)] ?? []).map(([a, b]) => [BigInt(a), BigInt(b)]);
}

/** A manifest's coverage of `topic`: each partition's ranges merged, partitions in order. */
export function coverageOf(
  topic: string,
  byPartition: ReadonlyMap<number, readonly [bigint, bigint][]>,
): DayManifest['coverage'] {
  const coverage: DayManifest['coverage'] = { topic, partitions: {} };
  for (const [p, r] of [...byPartition].sort((a, b) => a[0] - b[0]))
    if (r.length > 0)
      coverage.partitions[String(p)] = mergeRanges(r).map(([a, b]) => [a.toString(), b.toString()]);
  return coverage;
}

/** Sorted, merged inclusive ranges (adjacent ones joined). */
export function mergeRanges(ranges: readonly [bigint, bigint][]): [bigint, bigint][] {
  const sorted = [...ranges].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0));
  const out: [bigint, bigint][] = [];
  for (const [a, b] of sorted) {
    const last = out.at(-1);
    if (last && a <= last[1] + 1n) last[1] = b > last[1] ? b : last[1];
    else out.push([a, b]);
  }
  return out;
}

export function inRanges(ranges: readonly [bigint, bigint][], offset: bigint): boolean {
  for (const [a, b] of ranges) if (offset >= a && offset <= b) return true;
  return false;
}

/**
 * The exporter files of `topic` among `names` (object names in a day directory, in order)
 * whose first offset `m`'s coverage does not hold: late records no manifest has taken in
 * yet, or every exporter file of a day with no manifest.
 */
export function uncoveredExporterFiles(
  m: DayManifest | undefined,
  topic: string,
  names: Iterable<string>,
): { name: string; file: ExporterFileName }[] {
  const out: { name: string; file: ExporterFileName }[] = [];
  for (const name of names) {
    const file = parseExporterFileName(name);
    if (file && file.topic === topic && !inRanges(coveredRanges(m, topic, file.partition), file.first))
      out.push({ name, file });
  }
  return out;
}
