import type pg from 'pg';
import { computeBackoff, type BackoffPolicy } from '../shared/compute-backoff.ts';
import type { Logger } from '../shared/logger.ts';
import { claimOutboxBatch, type OutboxRow } from './claim-outbox-batch.ts';
import { holdLease, type LeaseHold } from './hold-lease.ts';
import { markSent } from './mark-sent.ts';
import { publishBatch, type PublishDeps } from './publish-batch.ts';
import type { RelayMetrics } from './relay-metrics.ts';
import { releaseFailedRows } from './release-failed-rows.ts';

export interface RelayOptions {
  /** Lease owner name, unique per replica (RELAY_ID). */
  readonly owner: string;
  /** Rows per claim (RELAY_BATCH_SIZE). */
  readonly batchSize: number;
  /** Claim lease in milliseconds (RELAY_LEASE_MS), renewed while its batch is in flight (hold-lease.ts). */
  readonly leaseMs: number;
  /** Fallback poll in milliseconds (RELAY_POLL_INTERVAL_MS) for when no notification comes. */
  readonly pollIntervalMs: number;
  /** Waits after failures: per row (persisted as available_at) and for the loop itself. */
  readonly backoff: BackoffPolicy;
}

export interface RelayDeps {
  readonly pool: pg.Pool;
  /** Its producer is replaceable: a failed send is never followed by one on the same producer id. */
  readonly publish: PublishDeps;
  readonly logger: Logger;
  readonly metrics: RelayMetrics;
  readonly options: RelayOptions;
  /** [0, 1) source for backoff jitter; injected so tests are deterministic. */
  readonly random?: () => number;
}

export interface BatchResult {
  readonly claimed: number;
  readonly published: number;
  /** Rows left pending for a retry. */
  readonly failed: number;
  /** The send itself failed (Kafka), as opposed to single rows being rejected. */
  readonly publishFailed: boolean;
}

export interface Relay {
  /** Runs one claim → publish → mark-sent cycle. Throws only when claiming or marking fails. */
  runOnce(): Promise<BatchResult>;
  /** Starts the background loop. */
  start(): void;
  /** Runs the next cycle now instead of at the next poll (a notification arrived). */
  wake(): void;
  /** Lets the in-flight batch finish, then ends the loop. */
  stop(): Promise<void>;
}

/**
 * A batch's lease is renewed while it is published and marked, for at most this many
 * leases (two minutes at the default RELAY_LEASE_MS): longer than any send with kafkajs'
 * bounded retries, short enough that a send that never settles cannot hold rows for good.
 */
export const LEASE_HOLD_MAX_LEASES = 4;

const NO_HOLD: LeaseHold = { release() {} };

const codeOf = (err: unknown, fallback: string) => {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && code.startsWith('ERR_') ? code : fallback;
};

export function createRelay(deps: RelayDeps): Relay {
  const { pool, metrics, options } = deps;
  const logger = deps.logger.child({ component: 'outbox-relay', relayId: options.owner });
  const random = deps.random ?? Math.random;
  const retryIn = (row: OutboxRow) => computeBackoff(row.attempts, options.backoff, random);

  const holdWarning = ({ code, error }: { code: string; error?: unknown }) =>
    logger.warn(
      code === 'WARN_RELAY_LEASE_RENEW'
        ? 'could not renew the lease of a batch in flight; it may run out'
        : 'a batch outlasted its longest lease hold; another relay may publish it too',
      { code, error },
    );

  /**
   * Claims and publishes one batch; returns what to mark sent, and the hold on its lease,
   * which the caller releases once marking has settled.
   */
  async function claimAndPublish(): Promise<{ result: BatchResult; ids: string[]; hold: LeaseHold }> {
    const rows = await claimOutboxBatch(pool, options).catch((err: unknown) => {
      throw Object.assign(err as object, { relayCode: 'ERR_RELAY_CLAIM' });
    });
    if (rows.length === 0)
      return {
        result: { claimed: 0, published: 0, failed: 0, publishFailed: false },
        ids: [],
        hold: NO_HOLD,
      };
    metrics.batchSize.observe(rows.length);
    const hold = holdLease(
      pool,
      rows.map((r) => r.id),
      {
        owner: options.owner,
        leaseMs: options.leaseMs,
        maxLeases: LEASE_HOLD_MAX_LEASES,
        onWarning: holdWarning,
      },
    );

    let outcome;
    try {
      outcome = await publishBatch(deps.publish, rows);
    } catch (err) {
      hold.release();
      const code = codeOf(err, 'ERR_RELAY_PUBLISH');
      metrics.publishFailures.inc({ code }, rows.length);
      // Message and code only: never the rows' payloads, keys or identifiers.
      logger.error('outbox batch not published; rows stay pending', {
        code,
        rows: rows.length,
        error: err instanceof Error ? err.message : String(err),
        detail: (err as { detail?: unknown }).detail,
      });
      const reason = `${code}: ${err instanceof Error ? err.message : String(err)}`;
      await release(rows.map((row) => ({ id: row.id, error: reason, delayMs: retryIn(row) })));
      return {
        result: { claimed: rows.length, published: 0, failed: rows.length, publishFailed: true },
        ids: [],
        hold: NO_HOLD,
      };
    }

    if (outcome.rejected.length > 0) {
      for (const { reason } of outcome.rejected) metrics.publishFailures.inc({ code: reason.split(':')[0] });
      logger.warn('outbox rows rejected; they stay pending', {
        code: 'ERR_RELAY_ENCODE',
        rows: outcome.rejected.length,
        reasons: [...new Set(outcome.rejected.map((r) => r.reason))],
      });
      await release(
        outcome.rejected.map(({ row, reason }) => ({ id: row.id, error: reason, delayMs: retryIn(row) })),
      );
    }

    const ids = outcome.published.map((r) => r.id);
    metrics.published.inc(ids.length);
    if (ids.length === 0) hold.release();
    return {
      result: {
        claimed: rows.length,
        published: ids.length,
        failed: outcome.rejected.length,
        publishFailed: false,
      },
      ids,
      hold,
    };
  }

  /** Marks published rows sent (and dispatches their tasks); throws with a relayCode. */
  async function markPublished(ids: readonly string[]): Promise<void> {
    const marked = await markSent(pool, options.owner, ids).catch((err: unknown) => {
      // Published but not recorded: the leases expire and the rows go out again (at least once).
      throw Object.assign(err as object, { relayCode: 'ERR_RELAY_MARK_SENT' });
    });
    if (marked < ids.length) {
      logger.warn('lease lost before marking sent; another relay republishes those rows', {
        code: 'ERR_RELAY_LEASE_LOST',
        rows: ids.length - marked,
      });
    }
  }

  /** One claim → publish → mark-sent cycle, marking before it returns. */
  async function runOnce(): Promise<BatchResult> {
    const { result, ids, hold } = await claimAndPublish();
    try {
      await markPublished(ids);
    } finally {
      hold.release();
    }
    return result;
  }

  /** Best effort: if this fails, the leases simply expire and the rows are claimed again. */
  async function release(failed: Parameters<typeof releaseFailedRows>[2]) {
    await releaseFailedRows(pool, options.owner, failed).catch((err: unknown) =>
      logger.warn('could not release failed rows; their leases will expire', {
        code: 'ERR_RELAY_RELEASE',
        error: err,
      }),
    );
  }

  let stopping = false;
  let running: Promise<void> | undefined;
  let wakeRequested = false;
  let sleeping: { wakeable: boolean; done: () => void } | undefined;

  const pause = (ms: number, wakeable: boolean) =>
    new Promise<void>((resolve) => {
      if (stopping || (wakeable && wakeRequested)) return resolve();
      const done = () => {
        clearTimeout(timer);
        sleeping = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      sleeping = { wakeable, done };
    });

  /**
   * Mark-sent of batch N runs while batch N+1 is claimed and published: the database's and
   * Kafka's round trips overlap instead of adding up. At most one mark is in flight. It is
   * safe because batch N's rows stay leased to us and pending until marked: no claim takes
   * them again, and a later event of the same subject is not claimed before they are sent.
   * Settled (as an error value, never an unhandled rejection) before the loop goes on.
   */
  let marking: Promise<unknown> | undefined;
  const settleMarking = async () => {
    const previous = marking;
    marking = undefined;
    const failure = await previous;
    if (failure) throw failure;
  };

  async function loop() {
    let failures = 0;
    while (!stopping) {
      // Cleared before claiming: a notification from here on may be for rows this claim misses.
      wakeRequested = false;
      let delayMs = options.pollIntervalMs;
      let wakeable = true;
      try {
        const { result, ids, hold } = await claimAndPublish();
        // Batch N's mark settles before N+1's starts (one in flight), and N+1's starts even
        // if N's failed: otherwise N+1's published rows would wait a whole lease and go out
        // again. N's failure is thrown after that.
        const previous = marking;
        marking = undefined;
        const failure = await previous;
        if (ids.length > 0)
          marking = markPublished(ids)
            .finally(() => hold.release())
            .then(
              () => undefined,
              (err: unknown) => err,
            );
        if (failure) throw failure;
        if (result.publishFailed) {
          failures += 1;
        } else {
          failures = 0;
          // A full batch means more is probably waiting: go again without sleeping, with its
          // mark-sent still running. Otherwise the batch is marked before the loop rests.
          if (result.claimed === options.batchSize) delayMs = 0;
          else await settleMarking();
        }
      } catch (err) {
        failures += 1;
        const code = (err as { relayCode?: string }).relayCode ?? 'ERR_RELAY_LOOP';
        metrics.loopErrors.inc({ code });
        logger.error('outbox relay cycle failed', {
          code,
          attempt: failures,
          errorCode: (err as { code?: unknown }).code,
          error: err instanceof Error ? err.message : String(err),
        });
      }
      if (failures > 0) {
        // Backing off is the point: a notification must not cut it short while Kafka or Postgres is down.
        delayMs = computeBackoff(failures, options.backoff, random);
        wakeable = false;
      }
      await pause(delayMs, wakeable);
    }
    await settleMarking().catch((err: unknown) =>
      logger.error('outbox relay cycle failed', {
        code: (err as { relayCode?: string }).relayCode ?? 'ERR_RELAY_LOOP',
        error: err instanceof Error ? err.message : String(err),
      }),
    );
  }

  return {
    runOnce,
    start() {
      if (!running) running = loop();
    },
    wake() {
      wakeRequested = true;
      if (sleeping?.wakeable) sleeping.done();
    },
    async stop() {
      stopping = true;
      sleeping?.done();
      await running;
    },
  };
}
