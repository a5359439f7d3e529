import type pg from 'pg';
import { settleRequest } from '../shared/apply-ack.ts';

export interface GiveUp {
  readonly requestId: string;
  readonly target: string;
  /** last_error: what a person reads on the task. */
  readonly reason: string;
  /** Machine-readable cause for the journal. */
  readonly cause: 'no_acknowledgement' | 'original_event_missing';
}

/**
 * Locking query: the requests' rows, FOR NO KEY UPDATE SKIP LOCKED. Making a task terminal
 * needs its request locked first (apply-ack.ts: the "all tasks terminal?" check must see
 * every concurrent ack). We already hold the task locks from the claim, the reverse of the
 * usual request-then-task order, so waiting here could deadlock with an ack that holds the
 * request and waits for our task. SKIP LOCKED never waits: a request busy with an ack is
 * left for the next round (the ack may well make the give-up unnecessary).
 */
const LOCK_REQUESTS = `
SELECT id, status FROM erasure_requests WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE SKIP LOCKED`;

/** The state guard keeps a task that is already terminal as it is (the first answer wins). */
const FAIL_TASKS = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS i(request_id, target, reason, cause)
),
failed AS (
  UPDATE erasure_tasks t
     SET state = 'failed', last_error = i.reason, updated_at = now()
    FROM input i
   WHERE t.request_id = i.request_id
     AND t.target = i.target
     AND t.state IN ('dispatched', 'retrying')
  RETURNING t.request_id, t.target, t.attempts, i.cause
)
INSERT INTO journal (request_id, kind, actor, detail)
SELECT f.request_id, 'task.failed', $5,
       jsonb_build_object('target', f.target, 'status', 'failed', 'cause', f.cause, 'deliveries', f.attempts)
  FROM failed f
RETURNING request_id`;

/**
 * Fails tasks whose target stayed silent, inside the caller's transaction, and settles their
 * requests (needs_attention once every task is terminal, through settleRequest's
 * exactly-once guard). Returns how many tasks failed; tasks whose request was busy are
 * deferred to a later round, not dropped.
 */
export async function failSilentTasks(
  client: pg.ClientBase,
  items: readonly GiveUp[],
  actor: string,
): Promise<{ failed: number; deferred: number }> {
  if (items.length === 0) return { failed: 0, deferred: 0 };
  const locked = await client.query<{ id: string; status: string }>({
    name: 'redelivery_lock_requests',
    text: LOCK_REQUESTS,
    values: [[...new Set(items.map((i) => i.requestId))]],
  });
  const statusOf = new Map(locked.rows.map((r) => [r.id, r.status]));
  const ready = items.filter((i) => statusOf.has(i.requestId));
  if (ready.length === 0) return { failed: 0, deferred: items.length };
  const res = await client.query({
    name: 'redelivery_fail_tasks',
    text: FAIL_TASKS,
    values: [
      ready.map((i) => i.requestId),
      ready.map((i) => i.target),
      ready.map((i) => i.reason),
      ready.map((i) => i.cause),
      actor,
    ],
  });
  // settleRequest is per request; give-ups are rare (a partner silent through every delivery).
  for (const requestId of new Set(ready.map((i) => i.requestId))) {
    await settleRequest(client, requestId, statusOf.get(requestId)!, actor);
  }
  return { failed: res.rowCount ?? 0, deferred: items.length - ready.length };
}
