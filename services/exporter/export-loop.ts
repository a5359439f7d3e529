/**
 * The exporter's loop: privacy.erasure.requested.v1 → Parquet files on S3, exactly once.
 *
 * Rows are buffered per (partition, day) in a ParquetFileBuilder; a file is rolled when it
 * reaches its row, byte or age limit, or when all open files together pass the memory cap
 * (the largest is rolled). The object key carries the partition and the first and last
 * offset the file holds (object-keys.ts).
 *
 * Exactly once, the argument:
 * 1. Offsets are committed only after S3 acknowledged every object holding records below
 *    them (PartitionState.durableOffset); autoCommit is off and kafkajs never commits for us.
 *    A crash therefore never loses a record: everything from the committed offset on is
 *    read again.
 * 2. A crash after an upload and before its commit means the replay reads records that are
 *    already durable. Within one (partition, day), records go to files in offset order and
 *    each file holds every record of that day between its first and last offset, so a record
 *    (offset o, day d) is durable iff some exporter file of (partition, d) has first ≤ o ≤ last,
 *    or the day's manifest coverage (compaction) contains o. On the first record of a
 *    (partition, day) after an assignment, the loop LISTs that partition's files of that day
 *    (S3 LIST is strongly consistent after PUT) and reads the manifest, and skips every record
 *    inside those ranges. The replay may cut files at other offsets than the first run did
 *    (time-based rolls differ), but it only writes records that are in no file, so no record
 *    is written twice and the new files' ranges do not overlap the old ones.
 * 3. A rebalance drops every open file (nothing of it was committed) and kafkajs restarts each
 *    partition from its committed offset; uploads still in flight in this process are awaited
 *    before a partition's first batch of the new assignment, so the LIST sees them.
 * Limit: if a partition moves to another process while this one's upload is in flight, the
 * other process may LIST before the upload lands and write those records again. Compaction
 * dedupes on (event_id, identifier) before it seals a day, so sealed days are exact; an open
 * day may then show the duplicate until it is compacted. (The DELETE-free alternative, a
 * per-partition fencing token, needs conditional writes the local S3 server lacks.)
 */
import type { Admin, Consumer } from 'kafkajs';
import { Counter, Gauge, type Registry } from 'prom-client';
import { createStoppableRetry, STOPPED } from '../shared/stoppable-retry.ts';
import { utcDate } from '../shared/dataset/dataset-schema.ts';
import type { DatasetStore } from '../shared/dataset/dataset-store.ts';
import {
  coveredRanges,
  deleteSuccessMarker,
  inRanges,
  mergeRanges,
  readManifest,
} from '../shared/dataset/manifest.ts';
import {
  baseName,
  exporterFileKey,
  parseExporterFileName,
  partitionFilePrefix,
} from '../shared/dataset/object-keys.ts';
import type { Logger } from '../shared/logger.ts';
import { ColumnarFileBuilder, inlineEncoder, type GroupEncoder, type RowPosition } from './columnar-file.ts';
import { UndecodableEventError, type RequestedDecoder } from './decode-requested.ts';
import { workerEncoder } from './group-encoder.ts';
import type { FetchedRecords } from './kafka-fetch/fetch-wire.ts';
import { PartitionFetcher } from './kafka-fetch/partition-fetcher.ts';
import { PartitionState } from './partition-state.ts';
import { RequestedSpans } from './requested-spans.ts';

export interface ExportLimits {
  /** Roll a file at this many rows. */
  readonly maxFileRows: number;
  /** Roll a file when its encoded bytes reach this. */
  readonly maxFileBytes: number;
  /** Roll a file this long after its first row, in ms, so a quiet topic's rows still land. */
  readonly maxFileAgeMs: number;
  /**
   * Open files and files being uploaded together hold at most about this many bytes: reading
   * waits for uploads, and the largest open file is rolled when open files alone pass it.
   */
  readonly maxBufferedBytes: number;
  /** Rows per Parquet row group. */
  readonly rowGroupRows: number;
  /**
   * A file holding at least this many rows is rolled as soon as its partition is caught up
   * (a batch reached the high watermark), instead of waiting for its age: after a backlog
   * or a burst the rows land at once, while a quiet topic's few rows still wait for the age
   * roll and do not make small files. The last file of a backlog (opened while the partition
   * was behind) is rolled then too, whatever its size.
   */
  readonly caughtUpRollRows: number;
  /** Uploads in flight at once; the loop waits (backpressure) beyond it. */
  readonly maxConcurrentUploads: number;
}

/** How the exporter's own fetcher reads (kafka-fetch/partition-fetcher.ts). */
export interface FetchLimits {
  /** Bytes per fetch response, and per partition in it. */
  readonly maxBytes: number;
  readonly maxBytesPerPartition: number;
  /** How long a fetch of caught-up partitions waits on the broker, ms; stop() waits for it. */
  readonly maxWaitMs: number;
  /** Connect and request timeout, ms. */
  readonly requestTimeoutMs: number;
}

export interface ExporterDeps {
  /** Group membership, heartbeats and commits only: its fetching is paused on every join. */
  consumer: Consumer;
  /** Committed offsets, log ends and metadata for the fetcher. */
  admin: Admin;
  groupId: string;
  fetch: FetchLimits;
  decoder: RequestedDecoder;
  store: DatasetStore;
  logger: Logger;
  metrics: Registry;
  topic: string;
  /** Key prefix of the dataset in the bucket, e.g. 'erasure_events'. */
  prefix: string;
  hmacKey: Buffer;
  limits: ExportLimits;
  fromBeginning: boolean;
  /** Longest pause between retries of a failing S3 or registry call, ms. */
  maxBackoffMs: number;
  /** Encode row groups on a worker thread (default true); false encodes in-line. */
  encodeInWorker?: boolean;
  clock?: () => number;
  random?: () => number;
  /** How often a file opened for a past day re-reads that day's manifest, ms (default 60,000). */
  manifestRecheckMs?: number;
  /** Test hook: runs after an object is durable and before its offsets are committed. */
  afterUpload?: (key: string) => Promise<void> | void;
  /** Test hook: runs before each record is appended; a throw there is a failed batch. */
  beforeAppend?: () => void;
}

interface OpenFile {
  partition: number;
  generation: number;
  dt: string;
  first: bigint;
  /** The last offset in the file (a number: set per record, a BigInt would be made per record). */
  last: number;
  builder: ColumnarFileBuilder;
  openedAt: number;
  /** Opened while the partition was behind (its last batch had not reached the high watermark). */
  openedBehind: boolean;
  maxEventTime: number;
}

const DAY_MS = 86_400_000;

/** utcDate, remembering the last day: one Date per day instead of one per record. */
export function dayCache(): (epochMs: number) => string {
  let start = 1;
  let end = 0;
  let dt = '';
  return (epochMs: number) => {
    if (epochMs >= start && epochMs < end) return dt;
    start = Math.floor(epochMs / DAY_MS) * DAY_MS;
    end = start + DAY_MS;
    dt = utcDate(start);
    return dt;
  };
}

export async function runExporter(deps: ExporterDeps): Promise<{ stop(): Promise<void> }> {
  const { consumer, decoder, store, topic, prefix, hmacKey, limits } = deps;
  const clock = deps.clock ?? Date.now;
  const manifestRecheckMs = deps.manifestRecheckMs ?? 60_000;
  const random = deps.random ?? Math.random;
  const logger = deps.logger.child({ component: 'exporter', topic });
  const registers = [deps.metrics];
  const eventsCounter = new Counter({
    name: 'erasure_dataset_events_total',
    help: 'Erasure events read by the exporter, by result (exported, already_durable, undecodable)',
    labelNames: ['result'],
    registers,
  });
  const rowsCounter = new Counter({
    name: 'erasure_dataset_rows_total',
    help: 'Rows written to the dataset',
    registers,
  });
  const filesCounter = new Counter({
    name: 'erasure_dataset_files_total',
    help: 'Parquet objects written',
    registers,
  });
  const bytesCounter = new Counter({
    name: 'erasure_dataset_bytes_total',
    help: 'Bytes of Parquet objects written',
    registers,
  });
  const bufferedGauge = new Gauge({
    name: 'erasure_dataset_buffered_bytes',
    help: 'Bytes held in open files',
    registers,
  });
  const uncommittedGauge = new Gauge({
    name: 'erasure_dataset_uncommitted_records',
    help: 'Records read but not yet committed (waiting in open files or uploads), summed over partitions',
    registers,
  });
  const eventTimeGauge = new Gauge({
    name: 'erasure_dataset_last_committed_event_time_seconds',
    help: 'Event time of the newest record in a committed file; now minus this is the export lag',
    registers,
  });

  let generation = 0;
  let stopping = false;
  const parts = new Map<number, PartitionState<OpenFile>>();
  /** Every upload in flight, for backpressure, shutdown and the start of a new assignment. */
  const uploads = new Map<OpenFile, Promise<void>>();
  /** Memory held by files rolled and not yet durable (their builders' estimate at roll). */
  let uploadingBytes = 0;
  const commitChains = new Map<number, Promise<void>>();
  // Once stopping, a call still gets three attempts (a stop's last uploads), waits cut short.
  const { retrying, wakeAll } = createStoppableRetry({
    logger,
    code: 'ERR_EXPORTER_RETRY',
    maxBackoffMs: deps.maxBackoffMs,
    isStopping: () => stopping,
    attemptsWhenStopping: 3,
    random,
  });
  const isRetriable = (err: unknown) => (err as { retriable?: unknown }).retriable !== false;

  function bufferedBytes(): number {
    let n = 0;
    for (const p of parts.values()) for (const f of p.open.values()) n += f.builder.memoryBytes;
    return n;
  }

  /** Ranges of (partition, day) already durable: exporter files in S3 plus the manifest's coverage. */
  async function coverage(
    p: PartitionState<OpenFile>,
    dt: string,
  ): Promise<[bigint, bigint][] | typeof STOPPED> {
    const known = p.covered.get(dt);
    if (known) return known;
    const listed = await retrying(
      'listing durable files',
      async () => {
        const [objects, manifest] = await Promise.all([
          store.list(partitionFilePrefix(prefix, dt, topic, p.partition)),
          readManifest(store, prefix, dt),
        ]);
        const ranges: [bigint, bigint][] = coveredRanges(manifest, topic, p.partition);
        for (const o of objects) {
          const f = parseExporterFileName(baseName(o.key));
          if (f && f.topic === topic && f.partition === p.partition) ranges.push([f.first, f.last]);
        }
        return { ranges: mergeRanges(ranges), sealed: manifest !== undefined };
      },
      isRetriable,
    );
    if (listed === STOPPED) return STOPPED;
    p.manifestReadAt.set(dt, clock());
    if (listed.sealed) warnSealed(p, dt);
    p.covered.set(dt, listed.ranges);
    return listed.ranges;
  }

  function warnSealed(p: PartitionState<OpenFile>, dt: string): void {
    p.sealedDays.add(dt);
    logger.warn('records for a day that is already compacted; compact the day again to include them', {
      code: 'WARN_EXPORTER_LATE_EVENT',
      dt,
      partition: p.partition,
    });
  }

  /**
   * The coverage above is read once per assignment, and an assignment lives for days: a day
   * compaction sealed since then would take late records without the warning that says to
   * compact it again. So a file opened for a day already over looks at its manifest again
   * (at most every manifestRecheckMs per partition and day; late records are rare).
   */
  async function recheckSealed(p: PartitionState<OpenFile>, dt: string): Promise<void | typeof STOPPED> {
    if (p.sealedDays.has(dt) || dt >= dayOf(clock())) return;
    if (clock() - (p.manifestReadAt.get(dt) ?? -Infinity) < manifestRecheckMs) return;
    const manifest = await retrying(
      'reading a day manifest',
      () => readManifest(store, prefix, dt),
      isRetriable,
    );
    if (manifest === STOPPED) return STOPPED;
    p.manifestReadAt.set(dt, clock());
    if (manifest) warnSealed(p, dt);
  }

  function partFor(partition: number): PartitionState<OpenFile> {
    let p = parts.get(partition);
    if (!p || p.generation !== generation) {
      p = new PartitionState<OpenFile>(partition, generation);
      parts.set(partition, p);
    }
    return p;
  }

  function updateGauges(): void {
    bufferedGauge.set(bufferedBytes());
    let n = 0n;
    for (const p of parts.values()) {
      if (p.next !== undefined && p.committed !== undefined && p.next > p.committed)
        n += p.next - p.committed;
    }
    uncommittedGauge.set(Number(n));
  }

  /** Commits the partition's durable offset, in order (a chain per partition). */
  function commit(p: PartitionState<OpenFile>): Promise<void> {
    const run = async () => {
      if (p.generation !== generation || parts.get(p.partition) !== p) return; // revoked meanwhile
      const offset = p.commitCandidate();
      if (offset === undefined) return;
      try {
        await consumer.commitOffsets([{ topic, partition: p.partition, offset: offset.toString() }]);
        p.committed = offset;
        resumeAt.set(p.partition, offset);
      } catch (err) {
        // A rebalance in progress or a coordinator change: the files are durable, and the
        // next owner skips their records (point 2 above), so a failed commit only costs a replay.
        logger.warn('offset commit failed; records will be re-read and skipped', {
          code: 'ERR_EXPORTER_COMMIT',
          partition: p.partition,
          error: err instanceof Error ? err.message : String(err),
        });
      }
      updateGauges();
    };
    const chain = (commitChains.get(p.partition) ?? Promise.resolve()).then(run);
    commitChains.set(p.partition, chain);
    return chain;
  }

  /** Closes the file and uploads it; commits the partition's offsets once S3 has it. */
  function roll(file: OpenFile): Promise<void> {
    const p = parts.get(file.partition);
    if (p && p.generation === file.generation && p.open.get(file.dt) === file) {
      p.open.delete(file.dt);
      p.uploading.add(file);
    }
    let durable = false;
    const held = file.builder.memoryBytes;
    uploadingBytes += held;
    const task = (async () => {
      const key = exporterFileKey(prefix, file.dt, topic, file.partition, file.first, BigInt(file.last));
      const rows = file.builder.rows;
      const { bytes, sha256, crc32 } = await file.builder.finish();
      // A late file for a sealed day: `_SUCCESS` says the directory's *.parquet are exactly
      // the manifest's files, so it goes before the upload, and again after it in case a
      // sweep wrote it meanwhile (sweep-day.ts; the sweep LISTs again after writing it).
      // Files are rolled only while their partition state is the current one, so `p` is the
      // state the file was opened in, and its sealedDays only grows: a day found sealed when
      // the file opened is in it still.
      const late = p?.sealedDays.has(file.dt) ?? false;
      const unmark = () =>
        retrying('deleting a day marker', () => deleteSuccessMarker(store, prefix, file.dt), isRetriable);
      const put =
        late && (await unmark()) === STOPPED
          ? STOPPED
          : await retrying(
              'uploading a dataset file',
              () => store.put(key, bytes, 'application/vnd.apache.parquet', { sha256, crc32 }),
              isRetriable,
            );
      if (put === STOPPED) {
        logger.warn('upload abandoned at shutdown; its records will be read again', {
          code: 'WARN_EXPORTER_ABANDONED',
          partition: file.partition,
          dt: file.dt,
        });
        return;
      }
      durable = true;
      if (late) await unmark(); // STOPPED: deleted before the upload; only a racing sweep rewrites it
      await deps.afterUpload?.(key);
      filesCounter.inc();
      rowsCounter.inc(rows);
      bytesCounter.inc(bytes.length);
      logger.debug('dataset file written', { key, rows, bytes: bytes.length, partition: file.partition });
      const owner = parts.get(file.partition);
      p?.uploading.delete(file);
      if (owner && owner === p) {
        await commit(owner);
        eventTimeGauge.set(file.maxEventTime / 1000);
      }
    })()
      .catch((err) => {
        // Not retriable (e.g. access denied), or the file could not be encoded: leave the
        // offsets uncommitted, so the records are read again after the problem is fixed and
        // the exporter restarts. The file stays in `uploading`, which holds the partition's
        // commits below its first offset: later files of the partition becoming durable must
        // not commit past records that are in no object.
        if (durable) p?.uploading.delete(file);
        logger.error('dataset file could not be written', {
          code: 'ERR_EXPORTER_UPLOAD',
          partition: file.partition,
          dt: file.dt,
          error: err instanceof Error ? err.message : String(err),
        });
      })
      .finally(() => {
        uploadingBytes -= held;
        uploads.delete(file);
        updateGauges();
      });
    uploads.set(file, task);
    return task;
  }

  async function backpressure(): Promise<void> {
    while (uploads.size >= limits.maxConcurrentUploads) await Promise.race(uploads.values());
    // Files being encoded or uploaded count against the memory cap too: wait for them first.
    while (uploads.size > 0 && bufferedBytes() + uploadingBytes > limits.maxBufferedBytes)
      await Promise.race(uploads.values());
    if (bufferedBytes() > limits.maxBufferedBytes) {
      let largest: OpenFile | undefined;
      for (const p of parts.values())
        for (const f of p.open.values())
          if (!largest || f.builder.memoryBytes > largest.builder.memoryBytes) largest = f;
      if (largest) void roll(largest);
    }
  }

  /** Time-based rolls, and commits for partitions whose records were all already durable. */
  const ticker = setInterval(
    () => {
      if (stopping) return;
      const now = clock();
      for (const p of parts.values()) {
        if (p.generation !== generation) continue;
        for (const f of [...p.open.values()]) if (now - f.openedAt >= limits.maxFileAgeMs) void roll(f);
        if (p.open.size === 0 && p.uploading.size === 0) void commit(p);
      }
    },
    Math.max(50, Math.min(1000, Math.floor(limits.maxFileAgeMs / 4))),
  );
  ticker.unref();

  consumer.on(consumer.events.GROUP_JOIN, (e) => {
    // kafkajs must not fetch: the fetcher reads. Paused again on every join, because
    // kafkajs starts a new group state, unpaused, when it restarts after a crash. The event
    // comes before kafkajs' first fetch of the assignment, and listeners run at once.
    consumer.pause([{ topic }]);
    // A new assignment: every partition restarts at its committed offset, so what the open
    // files hold (never committed) is dropped and will be read again.
    generation++;
    for (const p of parts.values()) p.open.clear();
    parts.clear();
    resumeAt.clear();
    queue.length = 0;
    wakeReader(); // a fetch loop of the old assignment waiting for room ends
    updateGauges();
    fetcher.assign(e.payload.memberAssignment[topic] ?? []);
  });
  consumer.on(consumer.events.CRASH, (e) =>
    logger.error('kafka consumer crashed', {
      code: 'ERR_KAFKA',
      error: e.payload.error,
      restart: e.payload.restart,
    }),
  );

  const worker =
    deps.encodeInWorker === false
      ? undefined
      : workerEncoder(hmacKey, (reason) =>
          logger.warn('encoder thread unavailable; encoding in-line', {
            code: 'WARN_EXPORTER_ENCODER_THREAD',
            reason,
          }),
        );
  const encoder: GroupEncoder = worker ?? inlineEncoder(hmacKey);
  const dayOf = dayCache();
  const spans = new RequestedSpans();

  /**
   * Read-ahead. kafkajs fetches the next batches only after eachBatch returns, so the loop
   * would sit idle through every fetch's round trip (a fifth of its time, one broker on
   * loopback). eachBatch therefore only queues a batch (moving kafkajs' fetch position past
   * it) and returns; `processQueue` appends the queued batches in order while the next fetch
   * is in flight. At most READ_AHEAD batches wait; beyond that eachBatch waits, which is how
   * backpressure (uploads, memory) still stops fetching. Commits are unaffected: they follow
   * durable files only (point 1 above), so a queued batch dropped by a stop or a rebalance is
   * simply read again.
   */
  const READ_AHEAD = 2;
  const queue: { batch: FetchedRecords; generation: number }[] = [];
  /** True while processQueue runs; `processing` is its promise, for stop() to await. */
  let draining = false;
  let processing: Promise<void> | undefined;
  /** Fetch loops waiting for room in the queue (one per leader broker at most). */
  const queueSpace: (() => void)[] = [];
  /**
   * Per partition of this assignment, where reading must resume if queued batches are
   * dropped by a failure: the first offset queued, then each committed offset.
   */
  const resumeAt = new Map<number, bigint>();

  /** The fetcher's hand-over: queues a partition's records; returns when there is room. */
  async function deliver(batch: FetchedRecords): Promise<void> {
    if (stopping) return;
    if (!resumeAt.has(batch.partition))
      resumeAt.set(batch.partition, BigInt(batch.count > 0 ? batch.offsets[0]! : batch.nextOffset!));
    const queuedIn = generation;
    queue.push({ batch, generation });
    if (!draining) {
      draining = true;
      processing = processQueue();
    }
    while (queue.length > READ_AHEAD && !stopping && queuedIn === generation)
      await new Promise<void>((r) => queueSpace.push(r));
  }

  function wakeReader(): void {
    for (const wake of queueSpace.splice(0)) wake();
  }

  const fetcher = new PartitionFetcher({
    admin: deps.admin,
    topic,
    groupId: deps.groupId,
    clientId: 'erasure-exporter',
    fromBeginning: deps.fromBeginning,
    logger,
    ...deps.fetch,
    maxBackoffMs: deps.maxBackoffMs,
    random,
    deliver,
    onExpired: (partition) =>
      logger.error(
        'records were deleted from Kafka before they were exported; the dataset misses them: backfill the days they belong to',
        { code: 'ERR_EXPORTER_RECORDS_EXPIRED', partition },
      ),
  });

  /**
   * Runs while the queue has batches. `draining` is cleared in the same synchronous step
   * that finds the queue empty, so a batch queued after that starts a new run (clearing it
   * in a later callback would leave that batch waiting for the next one, forever at a
   * partition's last batch).
   */
  async function processQueue(): Promise<void> {
    for (;;) {
      const item = queue.shift();
      wakeReader();
      if (!item) {
        draining = false;
        return;
      }
      if (stopping) {
        queue.length = 0;
        continue;
      }
      if (item.generation !== generation) continue; // an earlier assignment's batch
      try {
        await appendBatch(item.batch, item.generation);
      } catch (err) {
        // Never expected (S3 and registry calls retry inside); nothing of the batch is
        // committed. Drop everything open and queued, and move every partition back to its first
        // record not yet durable: the records are read again, those already durable skipped.
        logger.error('batch could not be appended; reading again from the last commit', {
          code: 'ERR_EXPORTER_BATCH',
          partition: item.batch.partition,
          error: err instanceof Error ? err.message : String(err),
        });
        queue.length = 0;
        generation++;
        parts.clear();
        for (const [partition, offset] of resumeAt) fetcher.seek(partition, Number(offset));
      }
    }
  }

  async function appendBatch(batch: FetchedRecords, batchGeneration: number): Promise<void> {
    if (stopping) return;
    const partition = batch.partition;
    let p = partFor(partition);
    if (p.next === undefined) {
      // First batch of this assignment: uploads of an earlier one must land before we LIST.
      const mine = [...uploads].filter(([f]) => f.partition === partition).map(([, t]) => t);
      await Promise.all(mine);
      // A slow upload is a long wait, and a rebalance may come meanwhile: this batch then
      // belongs to the assignment before it (the partition may be another process's now).
      if (batchGeneration !== generation) return;
      p = partFor(partition);
    }
    // Per-record work is kept small: counters are added up per batch, the memory check runs
    // every 512 records.
    let exported = 0;
    let durable = 0;
    let sinceCheck = 0;
    const { buf, offsets, timestamps, valueStarts, valueLens } = batch;
    let completed = true;
    // The next offset as a number while the loop runs, written to p.next before every await
    // (commits and the ticker read it only then) and at the end: no BigInt per record.
    let next = p.next === undefined ? -1 : Number(p.next);
    const flush = () => {
      if (next >= 0 && p.generation === generation && (p.next === undefined || BigInt(next) > p.next))
        p.next = BigInt(next);
    };
    // One position object per batch, updated per record (appendSpans reads it at once).
    const pos: RowPosition = { eventTime: 0, dt: '', partition, offset: 0, source: 'exporter' };
    for (let i = 0; i < batch.count; i++) {
      if (stopping || p.generation !== generation) {
        completed = false;
        break;
      }
      const offset = offsets[i]!;
      if (offset < next) continue; // seen already in this assignment
      const at = valueStarts[i]!;
      const len = valueLens[i]!;
      const fast = decoder.spansAt(buf, at, len, spans);
      const value = fast ? null : len < 0 ? null : buf.subarray(at, at + len);
      let event = fast ? undefined : decoder.decodeKnown(value);
      if (!fast && !event) {
        flush();
        try {
          const decoded = await retrying(
            'decoding an event',
            () => decoder.decode(value),
            (e) => !(e instanceof UndecodableEventError),
          );
          if (decoded === STOPPED) {
            completed = false;
            break;
          }
          event = decoded;
        } catch (err) {
          // Not an erasure event we can read (wrong format, unknown schema): it cannot be in
          // the dataset. Logged and counted, never silently; the partition moves on.
          logger.error('event skipped: not decodable', {
            code: 'ERR_EXPORTER_UNDECODABLE',
            partition,
            offset,
            reason: err instanceof Error ? err.message : String(err),
          });
          eventsCounter.inc({ result: 'undecodable' });
          next = offset + 1;
          continue;
        }
      }
      const eventTime = timestamps[i]!;
      const dt = dayOf(eventTime);
      let ranges = p.covered.get(dt);
      if (!ranges) {
        flush();
        const listed = await coverage(p, dt);
        if (listed === STOPPED || p.generation !== generation) {
          completed = false;
          break;
        }
        ranges = listed;
      }
      if (ranges.length > 0 && inRanges(ranges, BigInt(offset))) {
        durable++;
        next = offset + 1;
        continue;
      }
      let file = p.open.get(dt);
      if (!file) {
        flush();
        if ((await recheckSealed(p, dt)) === STOPPED || p.generation !== generation) {
          completed = false;
          break;
        }
        file = {
          partition,
          generation: p.generation,
          dt,
          first: BigInt(offset),
          last: offset,
          builder: new ColumnarFileBuilder(encoder, limits.rowGroupRows, {
            'erasure.dataset.source': 'exporter',
          }),
          openedAt: clock(),
          openedBehind: !p.caughtUp,
          maxEventTime: eventTime,
        };
        p.open.set(dt, file);
      }
      deps.beforeAppend?.();
      pos.eventTime = eventTime;
      pos.dt = dt;
      pos.offset = offset;
      if (fast) file.builder.appendSpans(spans, pos);
      else file.builder.appendEvent(event!, pos);
      file.last = offset;
      if (eventTime > file.maxEventTime) file.maxEventTime = eventTime;
      next = offset + 1;
      exported++;
      let rolled = false;
      if (file.builder.rows >= limits.maxFileRows || file.builder.encodedBytes >= limits.maxFileBytes) {
        void roll(file);
        rolled = true;
      }
      let overCap = false;
      if (rolled || ++sinceCheck >= 512) {
        sinceCheck = 0;
        overCap = bufferedBytes() + uploadingBytes > limits.maxBufferedBytes;
      }
      if (overCap || uploads.size >= limits.maxConcurrentUploads) {
        flush();
        await backpressure();
      }
    }
    // Records the fetch left out (control records, aborted transactions) were read too.
    if (completed && batch.nextOffset !== undefined && batch.nextOffset > next) next = batch.nextOffset;
    flush();
    // Caught up (this batch reached the partition's high watermark): roll now, rather than
    // when they age, the files worth a file and every file opened while the partition was
    // behind (a backlog's or a burst's last files). A file opened while the partition was
    // already caught up is a quiet topic's trickle: it waits for its age.
    if (!stopping && p.generation === generation && p.next !== undefined) {
      p.caughtUp = p.next >= BigInt(batch.highWatermark);
      if (p.caughtUp)
        for (const f of [...p.open.values()])
          if (f.openedBehind || f.builder.rows >= limits.caughtUpRollRows) void roll(f);
    }
    if (exported > 0) eventsCounter.inc({ result: 'exported' }, exported);
    if (durable > 0) eventsCounter.inc({ result: 'already_durable' }, durable);
    if (p.open.size === 0 && p.uploading.size === 0) void commit(p);
    updateGauges();
  }

  try {
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: deps.fromBeginning });
    // The fetcher reads; kafkajs, paused on every join, never delivers a batch.
    await consumer.run({ autoCommit: false, eachBatchAutoResolve: false, eachBatch: async () => undefined });
  } catch (err) {
    clearInterval(ticker);
    await fetcher.stop();
    await worker?.close();
    throw err;
  }
  logger.info('exporter running', { prefix });

  return {
    async stop() {
      stopping = true;
      clearInterval(ticker);
      wakeReader();
      await fetcher.stop();
      await processing;
      for (const p of parts.values()) for (const f of [...p.open.values()]) void roll(f);
      wakeAll(); // cut retry waits short: each gets its last attempts
      await Promise.all(uploads.values());
      await Promise.all(commitChains.values());
      await consumer.disconnect();
      await worker?.close();
    },
  };
}
