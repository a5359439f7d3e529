/**
 * The event ids a day of the dataset holds, for the jobs that keep an event in exactly one
 * day when it could fall on either side of a midnight (backfill's range edges, compaction's
 * relay duplicates).
 *
 * A day holds what its manifest lists (or, before its first manifest, every exporter file
 * of the day) and the exporter files of `topic` its manifest's coverage does not hold yet:
 * late records, which the day's next compaction takes in. Counting those too means an event
 * is never dropped from one day because of a copy in the other that readers do not see yet
 * and that would then never count.
 */
import type { DatasetStore } from './dataset-store.ts';
import { readManifest, uncoveredExporterFiles, type DayManifest } from './manifest.ts';
import { baseName, dayPrefix } from './object-keys.ts';
import { readEventIds } from './read-dataset-file.ts';

export interface DayEventIdsOptions {
  prefix: string;
  topic: string;
  dt: string;
  /** Only rows whose event_time is at or after this (epoch ms): a day's tail. */
  eventTimeFrom?: number;
}

export async function dayEventIds(store: DatasetStore, o: DayEventIdsOptions): Promise<Set<string>> {
  return (await dayHoldings(store, o, await readManifest(store, o.prefix, o.dt))).ids;
}

/**
 * The event ids a day holds (as dayEventIds) and the rows they are in: what a job that
 * replaces the day would drop if it wrote less (backfill's guard). Rows of exporter files
 * not compacted yet are counted as written, duplicates included. `m` is the day's manifest
 * as the caller read it (undefined: the day has none).
 */
export async function dayHoldings(
  store: DatasetStore,
  o: DayEventIdsOptions,
  m: DayManifest | undefined,
): Promise<{ ids: Set<string>; rows: number }> {
  const dir = dayPrefix(o.prefix, o.dt);
  const names = new Set(m?.files.map((f) => f.name) ?? []);
  const listed = (await store.list(dir)).map((x) => baseName(x.key));
  for (const { name } of uncoveredExporterFiles(m, o.topic, listed)) names.add(name);
  const ids = new Set<string>();
  let rows = 0;
  for (const n of names) {
    const bytes = await store.get(`${dir}${n}`);
    if (!bytes) continue;
    const fileIds = await readEventIds(bytes, o.eventTimeFrom);
    rows += fileIds.length;
    for (const id of fileIds) ids.add(id);
  }
  return { ids, rows };
}
