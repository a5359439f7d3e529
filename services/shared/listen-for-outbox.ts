import pg from 'pg';
import { computeBackoff, type BackoffPolicy } from './compute-backoff.ts';
import { connectionOptions } from './db/create-pool.ts';
import type { DatabaseTimeouts } from './infra-config.ts';
import type { Logger } from './logger.ts';

/**
 * Channel notified by migration 0002's trigger once per statement that inserts outbox rows,
 * at commit. Intake writes a request's tasks in the same statement as its requested event,
 * so a notification means both "events to publish" (relay) and "tasks may be due" (sync
 * dispatcher). The payload is empty by design.
 */
export const OUTBOX_CHANNEL = 'erasure_outbox';

export interface OutboxListener {
  /** Settles after the first connection attempt, whether it succeeded or not. */
  readonly ready: Promise<void>;
  listening(): boolean;
  stop(): Promise<void>;
}

export interface ListenOptions {
  readonly connectionString: string;
  /**
   * Connect and statement timeouts (the config's databaseTimeouts): a server that
   * accepts the connection and never answers fails the attempt, which is retried with
   * `reconnect`'s backoff, instead of holding `ready` (and the service's start) forever.
   */
  readonly timeouts: DatabaseTimeouts;
  /** Called on every notification, and after each (re)connect, since notifications sent while disconnected are lost. */
  readonly onNotify: () => void;
  readonly logger: Logger;
  /** Who listens, for log lines ("outbox relay", "sync dispatcher"). */
  readonly listener: string;
  /** Stable log code of a failed or lost connection (docs/errors.md). */
  readonly errorCode: string;
  /** Waits between reconnection attempts. */
  readonly reconnect: BackoffPolicy;
  readonly random?: () => number;
}

/**
 * A dedicated connection (LISTEN holds its session, so it cannot come from the pool) that
 * turns outbox commits into immediate wake-ups. Best effort by design: while it is down the
 * listener still polls, so a lost notification costs latency, never an event or a task.
 */
export function listenForOutbox(opts: ListenOptions): OutboxListener {
  const random = opts.random ?? Math.random;
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;

  const schedule = () => {
    if (stopped || timer) return;
    attempt += 1;
    const delayMs = computeBackoff(attempt, opts.reconnect, random);
    timer = setTimeout(() => {
      timer = undefined;
      void connect();
    }, delayMs);
  };
  const drop = (c: pg.Client) => {
    if (client !== c) return;
    client = undefined;
    c.end().catch(() => undefined);
    schedule();
  };
  const connect = async (): Promise<void> => {
    const c = new pg.Client(connectionOptions(opts.connectionString, opts.timeouts));
    c.on('notification', (m) => {
      if (m.channel === OUTBOX_CHANNEL) opts.onNotify();
    });
    c.on('error', (err) => {
      opts.logger.warn(`${opts.listener}: outbox listener connection failed`, {
        code: opts.errorCode,
        error: err,
      });
      drop(c);
    });
    c.on('end', () => drop(c));
    try {
      await c.connect();
      await c.query(`LISTEN ${OUTBOX_CHANNEL}`);
      if (stopped) {
        await c.end();
        return;
      }
      client = c;
      attempt = 0;
      opts.onNotify(); // notifications sent while we were away are lost: look now
    } catch (err) {
      opts.logger.warn(`${opts.listener}: outbox listener could not listen; polling only until it can`, {
        code: opts.errorCode,
        error: err,
      });
      c.end().catch(() => undefined);
      schedule();
    }
  };

  const ready = connect();
  return {
    ready,
    listening: () => client !== undefined,
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await ready;
      const c = client;
      client = undefined;
      await c?.end().catch(() => undefined);
    },
  };
}
