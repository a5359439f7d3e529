/**
 * Compaction of one day (`erasure dataset compact --date YYYY-MM-DD`): merges the day's
 * files into few large ones and publishes them with a new manifest, atomically for readers.
 *
 * 1. Inputs: the files of the current manifest (if any) plus every exporter file whose
 *    offset range the manifest's coverage does not already hold (files of late records).
 *    A file the manifest lists and the directory lacks stops the run (its rows would be
 *    lost silently). `_SUCCESS` is deleted before anything is written (see sweep-day.ts).
 * 2. Their rows are written, deduplicated on (event_id, identifier_type, identifier_value),
 *    to `compacted-g<next generation>-<n>.parquet`. Nothing refers to these names yet.
 *    Rows of an event the previous day already holds in its last `crossDayWindowMs` are
 *    dropped too: the relay is at-least-once, and a copy published again after midnight
 *    (a relay that crashed between publish and mark-sent, its lease then expiring) is
 *    stamped, and so filed, in the next day. The earlier day keeps the event. When this day
 *    is closed (see day-closed.ts) the earlier copy is exported: it sits before the later
 *    one in the same partition (same key), below the offsets the exporter has committed.
 * 3. The new manifest (one PutObject) lists only the new files; its coverage adds the
 *    exporter files' ranges, so an exporter replay skips those records. Readers switch from
 *    the old complete list to the new complete list in one step.
 * 4. Files no manifest lists any more are recorded as `superseded` with a deadline; a sweep
 *    deletes them once it has passed (grace period for readers still on the old list), and
 *    then writes `_SUCCESS`. Each run sweeps its own day and the `sweepDays` days before it,
 *    so a daily compaction deletes the previous days' replaced files without a second job.
 * A crash anywhere leaves the old manifest in force; re-running redoes the work (the output
 * names of the next generation are rewritten). One compaction per day at a time: it is a
 * daily job, and the manifest is read-modify-written.
 */
import { ErasureError } from '../errors.ts';
import {
  DATASET_SCHEMA_VERSION,
  columnLength,
  emptyColumns,
  type ColumnBuffer,
  DATASET_COLUMNS,
} from './dataset-schema.ts';
import type { DatasetStore } from './dataset-store.ts';
import { dayEventIds } from './day-event-ids.ts';
import {
  coverageOf,
  coveredRanges,
  deleteSuccessMarker,
  MANIFEST_FORMAT_VERSION,
  readManifest,
  uncoveredExporterFiles,
  writeManifest,
  type ManifestFile,
} from './manifest.ts';
import { addDays, baseName, dayPrefix, generationFileName, isGenerationFileName } from './object-keys.ts';
import { ParquetFileBuilder } from './parquet-file.ts';
import { readDatasetFile } from './read-dataset-file.ts';
import { sweepDays, type SweepDayResult } from './sweep-day.ts';

/** A file the day's manifest lists is not in its directory: compaction would lose its rows. */
export class ManifestFileMissingError extends ErasureError {
  constructor(message: string, detail: Record<string, unknown>) {
    super('ERR_DATASET_FILE_MISSING', message, 500, false, detail);
  }
}

export interface CompactOptions {
  store: DatasetStore;
  prefix: string;
  topic: string;
  dt: string;
  nowMs: number;
  /** How long replaced files stay readable, ms. */
  graceMs: number;
  /** Rows per output file (default 4,000,000) and per row group (default 131,072). */
  fileRows?: number;
  rowGroupRows?: number;
  /**
   * How far before midnight the previous day is searched for an event this day holds
   * again, ms (default 600,000: ten minutes, against the relay's 30 s lease).
   */
  crossDayWindowMs?: number;
  /** Days before `dt` swept after it (sweep-day.ts), default 7; 0 sweeps only `dt`. */
  sweepDays?: number;
  progress?: (line: string) => void;
}

export interface CompactResult {
  dt: string;
  generation: number;
  /** False when there was nothing new to merge (only due deletions were done). */
  compacted: boolean;
  inputFiles: number;
  files: number;
  rows: number;
  /** Rows dropped as copies: within the day, or of an event the previous day holds. */
  duplicatesDropped: number;
  /** Of those, rows of events the previous day holds. */
  crossDayDuplicatesDropped: number;
  /** Superseded files of `dt` deleted (their grace period over). */
  deleted: number;
  /** The sweep of `dt` itself, then of each earlier day swept, latest first. */
  swept: SweepDayResult[];
}

export async function compactDay(o: CompactOptions): Promise<CompactResult> {
  const say = o.progress ?? (() => undefined);
  const dir = dayPrefix(o.prefix, o.dt);
  const old = await readManifest(o.store, o.prefix, o.dt);
  const listed = await o.store.list(dir);
  const names = new Set(listed.map((x) => baseName(x.key)));
  const oldSuperseded = old?.superseded ?? [];
  const missing = (old?.files ?? []).filter((f) => !names.has(f.name));
  if (missing.length > 0)
    throw new ManifestFileMissingError(
      `${dir}${missing[0]!.name}${missing.length > 1 ? ` and ${missing.length - 1} more file(s)` : ''} ` +
        `listed by the manifest (generation ${old!.generation}) missing; compaction stopped so as not ` +
        `to lose their rows: restore them, or rebuild the day with erasure dataset backfill`,
      { dt: o.dt, generation: old!.generation, missing: missing.map((f) => f.name) },
    );

  /** The sweep of this day, then of the days before it (after this day's manifest is written). */
  const sweep = (): Promise<SweepDayResult[]> =>
    sweepDays({
      store: o.store,
      prefix: o.prefix,
      nowMs: o.nowMs,
      progress: say,
      days: Array.from({ length: (o.sweepDays ?? 7) + 1 }, (_, d) => addDays(o.dt, -d)),
    });

  const fresh = uncoveredExporterFiles(old, o.topic, names).filter(
    (x) => !oldSuperseded.some((s) => s.name === x.name),
  );
  const generation = (old?.generation ?? 0) + 1;
  if (old && fresh.length === 0) {
    say(`compact ${o.dt}: nothing new (generation ${old.generation} stands)`);
    const swept = await sweep();
    return {
      dt: o.dt,
      generation: old.generation,
      compacted: false,
      inputFiles: 0,
      files: old.files.length,
      rows: old.rows,
      duplicatesDropped: 0,
      crossDayDuplicatesDropped: 0,
      deleted: swept[0]!.deleted,
      swept,
    };
  }

  // Files are about to be added: the marker no longer holds (sweep-day.ts).
  await deleteSuccessMarker(o.store, o.prefix, o.dt);
  const inputs = [...(old?.files.map((f) => f.name) ?? []), ...fresh.map((x) => x.name)];
  say(`compact ${o.dt}: ${inputs.length} input file(s), generation ${generation}`);
  const earlier = await dayEventIds(o.store, {
    prefix: o.prefix,
    topic: o.topic,
    dt: addDays(o.dt, -1),
    eventTimeFrom: Date.parse(`${o.dt}T00:00:00Z`) - (o.crossDayWindowMs ?? 600_000),
  });
  const seen = new Set<string>();
  const events = new Set<string>();
  const outputs: ManifestFile[] = [];
  let rows = 0;
  let dups = 0;
  let crossDay = 0;
  let builder: ParquetFileBuilder | undefined;
  const fileRows = o.fileRows ?? 4_000_000;

  async function closeOutput(): Promise<void> {
    if (!builder || builder.rows === 0) return;
    const name = generationFileName('compacted', generation, outputs.length + 1);
    const bytes = builder.finish();
    await o.store.put(`${dir}${name}`, bytes, 'application/vnd.apache.parquet');
    outputs.push({ name, rows: builder.rows, bytes: bytes.length });
    say(`compact ${o.dt}: wrote ${name} (${builder.rows} rows)`);
    builder = undefined;
  }

  for (const name of inputs) {
    const bytes = await o.store.get(`${dir}${name}`);
    if (!bytes)
      throw new ManifestFileMissingError(`${dir}${name} disappeared during compaction`, {
        dt: o.dt,
        missing: [name],
      });
    const cols = await readDatasetFile(bytes);
    const keep: ColumnBuffer = emptyColumns();
    const n = columnLength(cols);
    for (let i = 0; i < n; i++) {
      if (earlier.has(cols.event_id[i]!)) {
        dups++;
        crossDay++;
        continue;
      }
      const k = `${cols.event_id[i]}\u0000${cols.identifier_type[i]}\u0000${cols.identifier_value[i]}`;
      if (seen.has(k)) {
        dups++;
        continue;
      }
      seen.add(k);
      events.add(cols.event_id[i]!);
      for (const c of DATASET_COLUMNS) (keep[c.name] as unknown[]).push(cols[c.name][i]);
    }
    for (let i = 0; i < columnLength(keep);) {
      builder ??= new ParquetFileBuilder(o.rowGroupRows ?? 131_072, {
        'erasure.dataset.source': 'compaction',
      });
      const take = Math.min(fileRows - builder.rows, columnLength(keep) - i);
      builder.append(keep, i, i + take);
      i += take;
      rows += take;
      if (builder.rows >= fileRows) await closeOutput();
    }
  }
  await closeOutput();

  const byPartition = new Map<number, [bigint, bigint][]>();
  for (const p of Object.keys(old?.coverage.partitions ?? {}))
    byPartition.set(Number(p), coveredRanges(old, o.topic, Number(p)));
  for (const { file: f } of fresh)
    byPartition.set(f.partition, [...(byPartition.get(f.partition) ?? []), [f.first, f.last]]);
  const coverage = coverageOf(o.topic, byPartition);

  const outputNames = new Set(outputs.map((f) => f.name));
  const deleteAfter = new Date(o.nowMs + o.graceMs).toISOString();
  const superseded = [...oldSuperseded];
  for (const name of names) {
    const generated = isGenerationFileName(name);
    if (
      !outputNames.has(name) &&
      !superseded.some((s) => s.name === name) &&
      (generated || inputs.includes(name))
    )
      superseded.push({ name, deleteAfter });
  }
  await writeManifest(o.store, o.prefix, {
    formatVersion: MANIFEST_FORMAT_VERSION,
    schemaVersion: DATASET_SCHEMA_VERSION,
    dt: o.dt,
    generation,
    writtenBy: 'compaction',
    writtenAt: new Date(o.nowMs).toISOString(),
    files: outputs,
    rows,
    events: events.size,
    coverage,
    superseded,
  });
  say(
    `compact ${o.dt}: manifest generation ${generation}: ${outputs.length} file(s), ${rows} rows, ` +
      `${dups} duplicate(s) dropped (${crossDay} of events the previous day holds)`,
  );
  const swept = await sweep();
  return {
    dt: o.dt,
    generation,
    compacted: true,
    inputFiles: inputs.length,
    files: outputs.length,
    rows,
    duplicatesDropped: dups,
    crossDayDuplicatesDropped: crossDay,
    deleted: swept[0]!.deleted,
    swept,
  };
}
