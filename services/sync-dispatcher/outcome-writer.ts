/**
 * Group commit for task outcomes: calls finish one by one, but their outcomes are written
 * together. A write starts a flush on the next tick unless one is running; whatever arrives
 * meanwhile goes in the next flush. At low load a batch is one outcome and nothing waits;
 * under load one transaction carries up to `maxBatch`.
 *
 * If a batch fails, its outcomes are written one at a time, so one bad row cannot hold back
 * the others; an outcome that still fails rejects its own promise (the caller retries).
 */
import type pg from 'pg';
import { recordOutcomes, type Recording } from './record-outcome.ts';

export interface OutcomeWriter {
  write(r: Recording): Promise<'recorded' | 'stale'>;
}

interface Pending {
  readonly recording: Recording;
  resolve(v: 'recorded' | 'stale'): void;
  reject(err: unknown): void;
}

export function createOutcomeWriter(opts: {
  pool: pg.Pool;
  owner: string;
  actor: string;
  /** Most outcomes per transaction. */
  maxBatch: number;
}): OutcomeWriter {
  const queue: Pending[] = [];
  let flushing = false;

  async function flush(): Promise<void> {
    flushing = true;
    try {
      while (queue.length > 0) {
        const batch = queue.splice(0, opts.maxBatch);
        try {
          const res = await recordOutcomes(
            opts.pool,
            batch.map((p) => p.recording),
            opts.owner,
            opts.actor,
          );
          batch.forEach((p, i) => p.resolve(res[i]!));
        } catch (err) {
          if (batch.length === 1) {
            batch[0]!.reject(err);
            continue;
          }
          for (const p of batch) {
            try {
              const [one] = await recordOutcomes(opts.pool, [p.recording], opts.owner, opts.actor);
              p.resolve(one!);
            } catch (e) {
              p.reject(e);
            }
          }
        }
      }
    } finally {
      flushing = false;
    }
  }

  return {
    write(recording) {
      return new Promise((resolve, reject) => {
        queue.push({ recording, resolve, reject });
        if (!flushing) {
          flushing = true;
          setImmediate(() => void flush());
        }
      });
    },
  };
}
