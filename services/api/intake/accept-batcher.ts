import type pg from 'pg';
import { insertRequests, type InsertOutcome, type NewRequest } from './insert-requests.ts';

export interface AcceptBatcherOptions {
  pool: pg.Pool;
  hmacKey: Buffer;
  /** Most requests in one statement (default 500). */
  maxBatch?: number;
  /** Accept statements in flight at once (default 2); requests arriving meanwhile wait and go together. */
  maxInFlight?: number;
}

interface Waiting {
  request: NewRequest;
  resolve: (o: InsertOutcome) => void;
  reject: (e: unknown) => void;
}

/**
 * Group commit for single requests. Concurrent `POST /v1/erasure-requests` calls are
 * accepted by one multi-row statement instead of one each: while `maxInFlight` statements
 * run, new requests queue, and the next free slot takes them all. Nothing is delayed when
 * idle (a lone request goes at once), and each caller still gets its answer only after
 * the statement holding its request has committed, so durability is unchanged. On a
 * 2-core machine this is what lets intake outrun one-transaction-per-request: the commit,
 * the planning and the round trip are paid once per group.
 *
 * Requests are grouped per (owner, actor), the statement's shared parameters. If a
 * grouped statement fails, each request is retried on its own, so one bad request cannot
 * fail its neighbours.
 */
export function createAcceptBatcher(opts: AcceptBatcherOptions) {
  const maxBatch = opts.maxBatch ?? 500;
  const maxInFlight = opts.maxInFlight ?? 2;
  const queues = new Map<string, { owner: string; actor: string; items: Waiting[] }>();
  let inFlight = 0;
  let scheduled = false;

  async function run(owner: string, actor: string, items: Waiting[]): Promise<void> {
    try {
      const outcomes = await insertRequests(opts.pool, {
        owner,
        actor,
        hmacKey: opts.hmacKey,
        requests: items.map((w) => w.request),
      });
      items.forEach((w, i) => w.resolve(outcomes[i]!));
    } catch (err) {
      if (items.length === 1) {
        items[0]!.reject(err);
        return;
      }
      for (const w of items) {
        await insertRequests(opts.pool, { owner, actor, hmacKey: opts.hmacKey, requests: [w.request] }).then(
          ([o]) => w.resolve(o!),
          w.reject,
        );
      }
    }
  }

  function pump(): void {
    scheduled = false;
    while (inFlight < maxInFlight && queues.size > 0) {
      const [key, q] = queues.entries().next().value as [
        string,
        { owner: string; actor: string; items: Waiting[] },
      ];
      const items = q.items.splice(0, maxBatch);
      if (q.items.length === 0) queues.delete(key);
      inFlight++;
      void run(q.owner, q.actor, items).finally(() => {
        inFlight--;
        pump();
      });
    }
  }

  return {
    accept(owner: string, actor: string, request: NewRequest): Promise<InsertOutcome> {
      return new Promise<InsertOutcome>((resolve, reject) => {
        const key = `${owner}\u0000${actor}`;
        let q = queues.get(key);
        if (!q) {
          q = { owner, actor, items: [] };
          queues.set(key, q);
        }
        q.items.push({ request, resolve, reject });
        // Let the requests of this event-loop turn join before the first statement goes.
        if (!scheduled) {
          scheduled = true;
          setImmediate(pump);
        }
      });
    },
  };
}
