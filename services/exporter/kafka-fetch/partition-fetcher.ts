/**
 * The exporter's reader: fetches the partitions the consumer group assigned to this process
 * from their leaders with its own Fetch requests (fetch-wire.ts) and hands each partition's
 * records, in offset order, to the export loop. kafkajs keeps what it is good at and what is
 * hard to get right: group membership, heartbeats, rebalances and offset commits. Its own
 * fetching is paused for good (export-loop.ts pauses the topic on every group join).
 *
 * Per assignment: the group's committed offsets (none: the log start with fromBeginning, else
 * the end), then one loop per leader broker, each with one connection and one fetch in flight.
 * A partition's records are handed over in order; `deliver` returns when the loop has room
 * (backpressure), and the next fetch goes out then, while the loop appends what it has.
 * Leadership errors and lost connections re-read the metadata and start the loops again from
 * the positions reached; `seek` moves a partition back (the loop's recovery after a failed
 * batch) and drops what was fetched before it.
 */
import type { Admin } from 'kafkajs';
import type { Logger } from '../../shared/logger.ts';
import { createStoppableRetry, STOPPED } from '../../shared/stoppable-retry.ts';
import { BrokerConnection } from './broker-connection.ts';
import {
  decodeFetchResponse,
  FETCH_API_KEY,
  FETCH_VERSION,
  fetchRequestBody,
  READ_COMMITTED,
  type FetchedRecords,
} from './fetch-wire.ts';

export interface FetcherOptions {
  admin: Admin;
  topic: string;
  groupId: string;
  clientId: string;
  fromBeginning: boolean;
  logger: Logger;
  /** Bytes per fetch response and per partition in it. */
  maxBytes: number;
  maxBytesPerPartition: number;
  /** How long a fetch of a caught-up partition waits on the broker for new records, ms. */
  maxWaitMs: number;
  /** Connect and request timeout, ms (a fetch's own wait comes on top). */
  requestTimeoutMs: number;
  maxBackoffMs: number;
  random?: () => number;
  /**
   * Takes a partition's records; resolves when the loop can take more. Called for a
   * partition's records in offset order, never for records fetched before a `seek` or an
   * assignment that came after them.
   */
  deliver(records: FetchedRecords): Promise<void>;
  /** Records below `logStart` were deleted (retention) before this group read them. */
  onExpired(partition: number): void;
}

/** Partition error codes that mean: the metadata is stale, ask again. */
const REFRESH_METADATA = new Set([3, 5, 6, 9, 56, 74, 75]);
const OFFSET_OUT_OF_RANGE = 1;

export class PartitionFetcher {
  private epoch = 0;
  private stopped = false;
  private running: Promise<void> | undefined;
  private readonly positions = new Map<number, number>();
  /** Per partition, bumped by seek: a response to a fetch sent before it is dropped. */
  private readonly seeks = new Map<number, number>();
  private readonly connections = new Set<BrokerConnection>();
  private readonly log: Logger;
  /** Ends the current run's retry waits early (a new assignment, stop). */
  private wakeRetries: () => void = () => undefined;

  constructor(private readonly o: FetcherOptions) {
    this.log = o.logger.child({ component: 'exporter-fetcher' });
  }

  /** A new assignment: the previous one's fetching ends; this one's starts. */
  assign(partitions: readonly number[]): void {
    const epoch = ++this.epoch;
    this.closeConnections();
    this.wakeRetries();
    this.positions.clear();
    const previous = this.running;
    this.running = (async () => {
      await previous;
      if (epoch !== this.epoch || this.stopped || partitions.length === 0) return;
      await this.runAssignment(
        epoch,
        [...partitions].sort((a, b) => a - b),
      );
    })().catch((err: unknown) => {
      this.log.error('fetching stopped', {
        code: 'ERR_EXPORTER_FETCH',
        error: err instanceof Error ? err.message : String(err),
      });
    });
  }

  /** Reads the partition again from `offset`; what was fetched before is dropped. */
  seek(partition: number, offset: number): void {
    this.positions.set(partition, offset);
    this.seeks.set(partition, (this.seeks.get(partition) ?? 0) + 1);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.epoch++;
    this.closeConnections();
    this.wakeRetries();
    await this.running;
  }

  private closeConnections(): void {
    for (const c of this.connections) c.close();
    this.connections.clear();
  }

  private async runAssignment(epoch: number, partitions: number[]): Promise<void> {
    const { admin, topic } = this.o;
    const current = () => epoch === this.epoch && !this.stopped;
    const { retrying, wakeAll } = createStoppableRetry({
      logger: this.log,
      code: 'ERR_EXPORTER_FETCH',
      maxBackoffMs: this.o.maxBackoffMs,
      isStopping: () => !current(),
      random: this.o.random,
    });
    this.wakeRetries = wakeAll;
    const start = await retrying(
      'reading the group offsets',
      async () => {
        // The log ends first, then the group's offsets, not both at once: reading the ends
        // loads the admin client's cluster metadata, and kafkajs, asked for a group's offsets
        // while it knows no broker yet, waits out a retry (about 300 ms) before it asks.
        const ends = await admin.fetchTopicOffsets(topic);
        const [committed] = await admin.fetchOffsets({ groupId: this.o.groupId, topics: [topic] });
        const out = new Map<number, number>();
        for (const p of partitions) {
          const c = Number(committed?.partitions.find((x) => x.partition === p)?.offset ?? -1);
          const end = ends.find((x) => x.partition === p);
          if (!end) throw new Error(`partition ${p} of the topic not found`);
          out.set(p, c >= 0 ? c : this.o.fromBeginning ? Number(end.low) : Number(end.high));
        }
        return out;
      },
      () => true,
    );
    if (start === STOPPED || !current()) return;
    // Set whatever an earlier run left (its last response may land after assign() cleared them).
    for (const [p, offset] of start) this.positions.set(p, offset);

    // Rounds: read the metadata, then fetch from every leader until one loop needs fresh
    // metadata (partitions may have moved) or fails. A round that handed records over starts
    // the next at once; one that failed before that is retried with backoff.
    while (current()) {
      const round = await retrying(
        'fetching',
        () => this.round(partitions, current),
        () => true,
      );
      if (round === STOPPED) return;
    }
  }

  /** One round (see runAssignment); throws if it ended before handing any records over. */
  private async round(partitions: number[], current: () => boolean): Promise<void> {
    const { admin, topic } = this.o;
    const [{ brokers }, meta] = await Promise.all([
      admin.describeCluster(),
      admin.fetchTopicMetadata({ topics: [topic] }),
    ]);
    const byLeader = new Map<number, number[]>();
    for (const p of partitions) {
      const leader = meta.topics[0]?.partitions.find((x) => x.partitionId === p)?.leader;
      if (leader === undefined || leader < 0) throw new Error(`partition ${p} has no leader`);
      byLeader.set(leader, [...(byLeader.get(leader) ?? []), p]);
    }
    const plan = [...byLeader].map(([nodeId, parts]) => {
      const b = brokers.find((x) => x.nodeId === nodeId);
      if (!b) throw new Error(`leader broker ${nodeId} is not in the cluster metadata`);
      return { host: b.host, port: b.port, parts };
    });
    let failure: unknown;
    const progress = { delivered: false };
    const live = () => current() && failure === undefined;
    await Promise.all(
      plan.map((b) =>
        this.brokerLoop(b.host, b.port, b.parts, live, progress).catch((err: unknown) => {
          failure ??= err;
          this.closeConnections(); // the other loops end too
        }),
      ),
    );
    if (failure === undefined || !current()) return;
    if (!progress.delivered) throw failure; // retrying logs it and backs off
    this.log.warn('fetch failed; reading the metadata again', {
      code: 'ERR_EXPORTER_FETCH',
      error: failure instanceof Error ? failure.message : String(failure),
    });
  }

  private async brokerLoop(
    host: string,
    port: number,
    parts: number[],
    live: () => boolean,
    progress: { delivered: boolean },
  ): Promise<void> {
    const o = this.o;
    const conn = await BrokerConnection.open(host, port, o.clientId, o.requestTimeoutMs);
    this.connections.add(conn);
    try {
      for (let round = 0; live(); round++) {
        // The partitions in turn first: a broker returns a batch larger than the partition's
        // byte limit only to the first partition with records, so a fixed order could keep a
        // later partition's large batch out for good.
        const turn = round % parts.length;
        const request = [...parts.slice(turn), ...parts.slice(0, turn)].map((partition) => ({
          partition,
          offset: this.positions.get(partition)!,
          maxBytes: o.maxBytesPerPartition,
        }));
        const seeksAtSend = request.map((r) => this.seeks.get(r.partition) ?? 0);
        const body = fetchRequestBody(o.topic, request, {
          maxWaitMs: o.maxWaitMs,
          minBytes: 1,
          maxBytes: o.maxBytes,
          isolationLevel: READ_COMMITTED,
        });
        const response = await conn.request(
          FETCH_API_KEY,
          FETCH_VERSION,
          body,
          o.requestTimeoutMs + o.maxWaitMs,
        );
        if (!live()) return;
        const decoded = decodeFetchResponse(response, 4, o.topic);
        if (decoded.errorCode !== 0) throw new Error(`fetch failed with Kafka error ${decoded.errorCode}`);
        for (const fp of decoded.partitions) {
          const i = request.findIndex((r) => r.partition === fp.partition);
          if (i < 0 || (this.seeks.get(fp.partition) ?? 0) !== seeksAtSend[i]) continue; // moved meanwhile
          if (fp.errorCode === OFFSET_OUT_OF_RANGE) {
            const moved = await this.outOfRange(fp.partition, request[i]!.offset);
            if (!live()) return;
            if ((this.seeks.get(fp.partition) ?? 0) === seeksAtSend[i])
              this.positions.set(fp.partition, moved);
            continue;
          }
          if (REFRESH_METADATA.has(fp.errorCode))
            throw new Error(
              `partition ${fp.partition}: Kafka error ${fp.errorCode}, reading the metadata again`,
            );
          if (fp.errorCode !== 0) throw new Error(`partition ${fp.partition}: Kafka error ${fp.errorCode}`);
          const r = fp.records;
          if (r.nextOffset === undefined || r.nextOffset <= request[i]!.offset) continue;
          this.positions.set(fp.partition, r.nextOffset);
          // Records before the fetch offset (a batch starts earlier) were read already.
          const from = request[i]!.offset;
          if (r.count > 0 && r.offsets[0]! < from) trimBefore(r, from);
          progress.delivered = true;
          await o.deliver(r);
          if (!live()) return;
        }
      }
    } finally {
      conn.close();
      this.connections.delete(conn);
    }
  }

  /**
   * The position is outside the partition's log: below its start when retention deleted
   * records this group never read (the dataset misses them: said as an error), above its end
   * after a truncation. Moves to the nearest end, as kafkajs did.
   */
  private async outOfRange(partition: number, pos: number): Promise<number> {
    const ends = await this.o.admin.fetchTopicOffsets(this.o.topic);
    const e = ends.find((x) => x.partition === partition);
    if (!e) throw new Error(`partition ${partition} not in the topic's offsets`);
    if (pos < Number(e.low)) {
      this.o.onExpired(partition);
      return Number(e.low);
    }
    return pos > Number(e.high) ? Number(e.high) : pos;
  }
}

/** Drops the records below `from` (a fetch returns whole batches, from the batch holding it). */
function trimBefore(r: FetchedRecords, from: number): void {
  let k = 0;
  while (k < r.count && r.offsets[k]! < from) k++;
  r.offsets = r.offsets.subarray(k);
  r.timestamps = r.timestamps.subarray(k);
  r.valueStarts = r.valueStarts.subarray(k);
  r.valueLens = r.valueLens.subarray(k);
  r.count -= k;
}
