/**
 * Backfill (`erasure dataset backfill --from D1 --to D2`): rebuilds days of the dataset from
 * the request store, for a new warehouse or after a bug. Every published event is an outbox
 * row with its payload (and so its eventId), so a rebuilt day has the same event ids as the
 * exporter wrote and replaces the day whole: files `backfill-g<n>-<k>.parquet`, then a new
 * manifest (the reader protocol of manifest.ts), the replaced files superseded with a grace
 * period. The exporter's files of those days stay in the manifest's coverage, so a replay
 * of Kafka does not add them again. `_SUCCESS` is deleted just before a day's first write
 * (a file or its manifest), and each day is swept after its manifest (sweep-day.ts):
 * superseded entries carried over from earlier generations whose grace period is over are
 * deleted then; the ones this run adds are left to a later `erasure dataset sweep` (or
 * compaction's sweep of the days before it) once their grace period is over.
 *
 * A rebuilt day replaces the day whole, so a request store that lacks some of its events
 * (outbox rows purged, the wrong database, an empty one) would empty it silently, and the
 * exporter's offset ranges kept in the coverage mean a Kafka replay never writes them again.
 * So before anything of a day is written the events it holds (dayHoldings) are looked up in
 * the request store, and a day that would lose any stops the run (BackfillFewerEventsError)
 * unless `allowFewer`. A day that fails or is refused is left as it was: nothing is written
 * before the database has answered, and files already written are deleted and `_SUCCESS`
 * restored if a later step fails before the manifest.
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
import { ErasureError } from '../errors.ts';
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
  type DayManifest,
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
  SUCCESS_NAME,
} from './object-keys.ts';
import { dayEventIds, dayHoldings } from './day-event-ids.ts';
import { ParquetFileBuilder } from './parquet-file.ts';
import { selectPublishedEvents, type PublishedEventRow } from './select-published-events.ts';
import { settleSuccess, sweepDay } from './sweep-day.ts';

/**
 * The request store lacks events a day of the range holds: rebuilding the day would drop
 * them. The day is left as it was; the run stops there (days before it are done).
 */
export class BackfillFewerEventsError extends ErasureError {
  constructor(message: string, detail: Record<string, unknown>) {
    super('ERR_DATASET_BACKFILL_FEWER', message, 500, false, detail);
  }
}

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
  /**
   * Replace a day even when the request store lacks events it holds (default false: such a
   * day stops the run with BackfillFewerEventsError, the day left as it was).
   */
  allowFewer?: boolean;
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
    const held = o.allowFewer
      ? undefined
      : await dayHoldings(o.store, { prefix: o.prefix, topic: o.topic, dt }, old);
    const outputs: ManifestFile[] = [];
    /** Names put (or being put) in this run, for the undo. */
    const written: string[] = [];
    const events = new Set<string>();
    /** Events of the window that the neighbouring day outside the range keeps. */
    const leftToNeighbour = new Set<string>();
    let rows = 0;
    let builder: ParquetFileBuilder | undefined;
    // Files are about to be added: the marker no longer holds (sweep-day.ts). It goes just
    // before the day's first write, so a run that stops before it (the database unreachable,
    // the guard) has changed nothing; `hadSuccess` says whether an undo restores it.
    let hadSuccess: boolean | undefined;
    const unmark = async () => {
      if (hadSuccess !== undefined) return;
      hadSuccess = (await o.store.get(`${dir}${SUCCESS_NAME}`)) !== undefined;
      await deleteSuccessMarker(o.store, o.prefix, dt);
    };
    const close = async () => {
      if (!builder || builder.rows === 0) return;
      const name = generationFileName('backfill', generation, outputs.length + 1);
      const bytes = builder.finish();
      await unmark();
      written.push(name);
      await o.store.put(`${dir}${name}`, bytes, 'application/vnd.apache.parquet');
      outputs.push({ name, rows: builder.rows, bytes: bytes.length });
      builder = undefined;
    };
    const writtenAt = new Date(o.nowMs).toISOString();
    let manifestSent = false;
    try {
      for await (const page of publishedPages(o, windowStart, windowEnd)) {
        for (const row of page) {
          const sentMs = row.sent_at.getTime();
          const event = toRequestedEvent(row.payload);
          if (
            (dt === o.from && sentMs < start + margin && before.has(event.eventId)) || // the day before has it
            (dt === o.to && sentMs >= dayEnd - margin && after.has(event.eventId)) // the next day has it
          ) {
            leftToNeighbour.add(event.eventId);
            continue;
          }
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
      if (held) {
        const lacking = await lackingEvents(o, dt, held.ids, [events, leftToNeighbour], margin);
        if (lacking > 0)
          throw new BackfillFewerEventsError(
            `${dt}: refused: the request store yields ${events.size} events (${rows} rows) for the day, ` +
              `which holds ${held.ids.size} events (${held.rows} rows); ${lacking} of them are not in the store. ` +
              `The day is left as it was (--allow-fewer replaces it anyway)`,
            { dt, events: events.size, rows, heldEvents: held.ids.size, heldRows: held.rows, lacking },
          );
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
      await unmark();
      manifestSent = true;
      await writeManifest(o.store, o.prefix, {
        formatVersion: MANIFEST_FORMAT_VERSION,
        schemaVersion: DATASET_SCHEMA_VERSION,
        dt,
        generation,
        writtenBy: 'backfill',
        writtenAt,
        files: outputs,
        rows,
        events: events.size,
        coverage,
        superseded,
      });
    } catch (err) {
      await undoDay(o, dt, { written, hadSuccess, old, manifestSent, generation, writtenAt });
      throw err;
    }
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

async function* publishedPages(
  o: BackfillOptions,
  fromMs: number,
  toMs: number,
): AsyncGenerator<PublishedEventRow[]> {
  for (let afterId = '0'; ;) {
    const page = await selectPublishedEvents(o.db, o.topic, fromMs, toMs, afterId, o.pageSize ?? 5000);
    if (page.length === 0) return;
    afterId = page.at(-1)!.id;
    yield page;
  }
}

/**
 * How many of the events a day holds the request store does not have: those a rebuild of
 * the day would drop. The events the backfill keeps or leaves to the neighbouring day are
 * found; the rest are looked up `margin` either side of the day, since near an inner
 * midnight of a range an event is filed by its sent_at, which may fall on the other side of
 * the midnight its Kafka timestamp (the exporter's day) fell on: moved, not lost.
 */
async function lackingEvents(
  o: BackfillOptions,
  dt: string,
  held: ReadonlySet<string>,
  found: readonly ReadonlySet<string>[],
  margin: number,
): Promise<number> {
  const lacking = new Set<string>();
  for (const id of held) if (!found.some((s) => s.has(id))) lacking.add(id);
  if (lacking.size === 0) return 0;
  const start = Date.parse(`${dt}T00:00:00Z`);
  const dayEnd = start + 86_400_000;
  const edges: [number, number][] = [];
  if (dt !== o.from) edges.push([start - margin, start]); // the range's edges already look beyond
  if (dt !== o.to) edges.push([dayEnd, dayEnd + margin]);
  for (const [a, b] of edges)
    for await (const page of publishedPages(o, a, b))
      for (const row of page) lacking.delete(toRequestedEvent(row.payload).eventId);
  return lacking.size;
}

/**
 * Leaves a day that failed before its manifest as it was: deletes the files this run wrote
 * and restores `_SUCCESS` if it was there (settleSuccess checks the directory is again
 * exactly the manifest's files). If the manifest's PutObject was sent, it may have landed:
 * the files are then kept unless the day's manifest is not this run's. Best effort: what
 * it cannot undo stays harmless (unlisted files, no `_SUCCESS`) and is said.
 */
async function undoDay(
  o: BackfillOptions,
  dt: string,
  s: {
    written: readonly string[];
    hadSuccess: boolean | undefined;
    old: DayManifest | undefined;
    manifestSent: boolean;
    generation: number;
    writtenAt: string;
  },
): Promise<void> {
  try {
    if (s.manifestSent) {
      const now = await readManifest(o.store, o.prefix, dt);
      if (now?.generation === s.generation && now.writtenAt === s.writtenAt) return; // it landed
    }
    if (s.written.length > 0) await o.store.delete(s.written.map((n) => `${dayPrefix(o.prefix, dt)}${n}`));
    if (s.hadSuccess && s.old) await settleSuccess(o.store, o.prefix, s.old);
  } catch (err) {
    o.progress?.(
      `backfill ${dt}: could not undo the failed run (${(err as Error).message}); ` +
        'the day may lack _SUCCESS and hold unlisted backfill files until it is backfilled or compacted again',
    );
  }
}
