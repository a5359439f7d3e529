import pg from 'pg';
import { computeBackoff, type BackoffPolicy } from '../shared/compute-backoff.ts';
import type { Logger } from '../shared/logger.ts';

/**
 * Migration 0002's channel: notified once per statement that inserts outbox rows, at commit.
 * Intake writes the requested event in the same statement as a request's tasks, so a
 * notification means "new tasks may be due now". The payload is empty by design.
 */
export const WORK_CHANNEL = 'erasure_outbox';

export interface WorkListener {
  readonly ready: Promise<void>;
  stop(): Promise<void>;
}

/**
 * A dedicated connection (LISTEN holds its session) that wakes the dispatcher when intake
 * commits, instead of at its next poll. Best effort: while it is down the dispatcher polls,
 * so a lost notification costs latency, never a task.
 */
export function listenForWork(opts: {
  connectionString: string;
  onNotify: () => void;
  logger: Logger;
  reconnect: BackoffPolicy;
  random?: () => number;
}): WorkListener {
  const random = opts.random ?? Math.random;
  let client: pg.Client | undefined;
  let stopped = false;
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;

  const retryLater = () => {
    if (stopped || timer) return;
    attempt += 1;
    timer = setTimeout(
      () => {
        timer = undefined;
        void connect();
      },
      computeBackoff(attempt, opts.reconnect, random),
    );
  };
  const drop = (c: pg.Client) => {
    if (client !== c) return;
    client = undefined;
    c.end().catch(() => undefined);
    retryLater();
  };
  const connect = async (): Promise<void> => {
    const c = new pg.Client({ connectionString: opts.connectionString, keepAlive: true });
    c.on('notification', (m) => {
      if (m.channel === WORK_CHANNEL) opts.onNotify();
    });
    c.on('error', (err) => {
      opts.logger.warn('work listener connection failed; polling meanwhile', {
        code: 'ERR_SYNC_LISTEN',
        error: err,
      });
      drop(c);
    });
    c.on('end', () => drop(c));
    try {
      await c.connect();
      await c.query(`LISTEN ${WORK_CHANNEL}`);
      if (stopped) {
        await c.end();
        return;
      }
      client = c;
      attempt = 0;
      opts.onNotify(); // notifications sent while we were away are lost: look now
    } catch (err) {
      opts.logger.warn('work listener could not listen; polling meanwhile', {
        code: 'ERR_SYNC_LISTEN',
        error: err,
      });
      c.end().catch(() => undefined);
      retryLater();
    }
  };

  const ready = connect();
  return {
    ready,
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
