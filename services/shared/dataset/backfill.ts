/**
 * Backfill (`erasure dataset backfill --from D1 --to D2`): rebuilds days of the dataset from
 * the request store, for a new warehouse or after a bug. Every published event is an outbox
 * row with its payload (and so its eventId), so a rebuilt day has the same event ids as the
 * exporter wrote and replaces the day whole: files `backfill-g<n>-<k>.parquet`, then a new
 * manifest (the reader protocol of manifest.ts), the replaced files superseded with a grace
 * period. The exporter's files of those days stay in the manifest's coverage, so a replay
 * of Kafka does not add them again. `_SUCCESS` is deleted before a day's files are written,
 * and each day is swept after its manifest (sweep-day.ts): superseded entries carried over
 * from earlier generations whose grace period is over are deleted then; the ones this run
 * adds are left to a later `erasure dataset sweep` (or compaction's sweep of the days
 * before it) once their grace period is over.
 *
 * Day boundaries: the exporter files an event under the UTC date of its Kafka timestamp
 * (the relay's clock); the request store knows `sent_at` (the database's clock, just after
 * Kafka acknowledged). Near midnight the two can fall on different days, in either
 * direction when the clocks disagree. So at each edge of the range, `marginMs` either side
 * of midnight is decided by what the neighbouring day outside the range holds: an event it
 * holds stays there, and one it does not hold is kept in the range's first or last day
 * (filed there, with its `dt` and event_time from its sent_at). Each event is thus in
 * exactly one day, and no event falls between a backfilled day and its neighbour.
 */
import type pg from 'pg';
import { toRequestedEvent } from '../event-codec.ts';
import { DATASET_SCHEMA_VERSION } from './dataset-schema.ts';
import type { DatasetStore } from './dataset-store.ts';
import {
  coverageOf,
  coveredRanges,
  deleteSuccessMarker,
  MANIFEST_FORMAT_VERSION,
  readManifest,
  writeManifest,
  type ManifestFile,
} from './manifest.ts';
import {
  addDays,
  baseName,
  dayPrefix,
  daysBetween,
  generationFileName,
  isGenerationFileName,
  parseExporterFileName,
} from './object-keys.ts';
import { dayEventIds } from './day-event-ids.ts';
import { ParquetFileBuilder } from './parquet-file.ts';
import { selectPublishedEvents } from './select-published-events.ts';
import { sweepDay } from './sweep-day.ts';

export interface BackfillOptions {
  db: pg.Pool;
  store: DatasetStore;
  prefix: string;
  topic: string;
  hmacKey: Buffer;
  from: string;
  to: string;
  nowMs: number;
  graceMs: number;
  /** Window around the range's edges, ms (default 10 minutes). */
  marginMs?: number;
  fileRows?: number;
  pageSize?: number;
  progress?: (line: string) => void;
}

export interface BackfillDayResult {
  dt: string;
  generation: number;
  events: number;
  rows: number;
  files: number;
  /** Superseded files deleted by the sweep after the manifest (their grace period over). */
  deleted: number;
  /** Superseded files left for a later sweep, and when the first of them is due. */
  pending: number;
  nextDeleteAfter?: string;
}

export async function backfillDays(o: BackfillOptions): Promise<BackfillDayResult[]> {
  const say = o.progress ?? (() => undefined);
  const margin = o.marginMs ?? 600_000;
  const days = daysBetween(o.from, o.to);
  const [before, after] = await Promise.all([
    dayEventIds(o.store, { prefix: o.prefix, topic: o.topic, dt: addDays(o.from, -1) }),
    dayEventIds(o.store, { prefix: o.prefix, topic: o.topic, dt: addDays(o.to, 1) }),
  ]);
  const results: BackfillDayResult[] = [];
  for (const dt of days) {
    const start = Date.parse(`${dt}T00:00:00Z`);
    const dayEnd = start + 86_400_000;
    // The range's edges look `margin` beyond it: see the day-boundary rules in the header.
    const windowStart = start - (dt === o.from ? margin : 0);
    const windowEnd = dayEnd + (dt === o.to ? margin : 0);
    const old = await readManifest(o.store, o.prefix, dt);
    const generation = (old?.generation ?? 0) + 1;
    const dir = dayPrefix(o.prefix, dt);
    // Files are about to be added: the marker no longer holds (sweep-day.ts).
    await deleteSuccessMarker(o.store, o.prefix, dt);
    const outputs: ManifestFile[] = [];
    const events = new Set<string>();
    let rows = 0;
    let builder: ParquetFileBuilder | undefined;
    const close = async () => {
      if (!builder || builder.rows === 0) return;
      const name = generationFileName('backfill', generation, outputs.length + 1);
      const bytes = builder.finish();
      await o.store.put(`${dir}${name}`, bytes, 'application/vnd.apache.parquet');
      outputs.push({ name, rows: builder.rows, bytes: bytes.length });
      builder = undefined;
    };
    let afterId = '0';
    for (;;) {
      const page = await selectPublishedEvents(
        o.db,
        o.topic,
        windowStart,
        windowEnd,
        afterId,
        o.pageSize ?? 5000,
      );
      if (page.length === 0) break;
      afterId = page.at(-1)!.id;
      for (const row of page) {
        const sentMs = row.sent_at.getTime();
        const event = toRequestedEvent(row.payload);
        if (dt === o.from && sentMs < start + margin && before.has(event.eventId)) continue; // the day before has it
        if (dt === o.to && sentMs >= dayEnd - margin && after.has(event.eventId)) continue; // the next day has it
        if (events.has(event.eventId)) continue;
        events.add(event.eventId);
        builder ??= new ParquetFileBuilder(131_072, { 'erasure.dataset.source': 'backfill' });
        const n0 = builder.rows;
        builder.appendEvent(o.hmacKey, event, {
          eventTime: sentMs,
          partition: null,
          offset: null,
          source: 'backfill',
        });
        rows += builder.rows - n0;
        if (builder.rows >= (o.fileRows ?? 4_000_000)) await close();
      }
      if (events.size % 50_000 < page.length) say(`backfill ${dt}: ${events.size} events so far`);
    }
    await close();
    // dt of the rows kept from after midnight is their sent_at's date; file them under this day.
    const listed = (await o.store.list(dir)).map((x) => baseName(x.key));
    const outputNames = new Set(outputs.map((f) => f.name));
    const deleteAfter = new Date(o.nowMs + o.graceMs).toISOString();
    const superseded = [...(old?.superseded ?? [])];
    const byPartition = new Map<number, [bigint, bigint][]>();
    for (const name of listed) {
      const f = parseExporterFileName(name);
      if (f && f.topic === o.topic)
        byPartition.set(f.partition, [...(byPartition.get(f.partition) ?? []), [f.first, f.last]]);
      const ours = f || isGenerationFileName(name);
      if (ours && !outputNames.has(name) && !superseded.some((s) => s.name === name))
        superseded.push({ name, deleteAfter });
    }
    for (const p of Object.keys(old?.coverage.partitions ?? {}))
      byPartition.set(Number(p), [
        ...(byPartition.get(Number(p)) ?? []),
        ...coveredRanges(old, o.topic, Number(p)),
      ]);
    const coverage = coverageOf(o.topic, byPartition);
    await writeManifest(o.store, o.prefix, {
      formatVersion: MANIFEST_FORMAT_VERSION,
      schemaVersion: DATASET_SCHEMA_VERSION,
      dt,
      generation,
      writtenBy: 'backfill',
      writtenAt: new Date(o.nowMs).toISOString(),
      files: outputs,
      rows,
      events: events.size,
      coverage,
      superseded,
    });
    say(
      `backfill ${dt}: ${events.size} events, ${rows} rows in ${outputs.length} file(s), manifest generation ${generation}`,
    );
    const swept = await sweepDay({ store: o.store, prefix: o.prefix, dt, nowMs: o.nowMs, progress: say });
    results.push({
      dt,
      generation,
      events: events.size,
      rows,
      files: outputs.length,
      deleted: swept.deleted,
      pending: swept.pending,
      nextDeleteAfter: swept.nextDeleteAfter,
    });
  }
  return results;
}
