import type pg from 'pg';
import { settleRequest } from '../shared/apply-ack.ts';
import { appendJournal } from '../shared/journal.ts';

/**
 * Ordering with a failed prerequisite. A sync task waits until every task of its request
 * for a target in its `after` list is terminal; if all are terminal and one of them failed
 * (or was cancelled), this task is never called and fails, naming the prerequisite. The
 * `after` list exists so children are deleted before their parents: calling this target
 * anyway could orphan or break what the failed one still holds, and waiting forever would
 * skip it silently. Failing it puts the request in needs_attention, where a person sees both.
 *
 * Any writer may fail the prerequisite (this dispatcher, an ack, redelivery giving up), so
 * this runs as a periodic sweep rather than only after our own failures. No locks here:
 * each candidate is re-checked under its locks by failDependent.
 */
const FIND_BLOCKED = `
SELECT t.request_id, t.target,
       array_agg(p.target ORDER BY p.target) FILTER (WHERE p.state <> 'acked') AS failed_prerequisites
  FROM targets g
  JOIN erasure_tasks t ON t.target = g.name AND t.state IN ('pending', 'retrying')
  JOIN erasure_tasks p ON p.request_id = t.request_id AND p.target = ANY (g.after_targets)
 WHERE g.kind = 'sync_http'
   AND cardinality(g.after_targets) > 0
 GROUP BY t.request_id, t.target
HAVING bool_and(p.state IN ('acked', 'failed', 'cancelled'))
   AND bool_or(p.state <> 'acked')
 LIMIT $1`;

// The same condition for one task, read again after its locks are held.
const STILL_BLOCKED = `
SELECT array_agg(p.target ORDER BY p.target) FILTER (WHERE p.state <> 'acked') AS failed_prerequisites,
       bool_and(p.state IN ('acked', 'failed', 'cancelled')) AS all_terminal
  FROM erasure_tasks t
  JOIN targets g ON g.name = t.target
  JOIN erasure_tasks p ON p.request_id = t.request_id AND p.target = ANY (g.after_targets)
 WHERE t.request_id = $1 AND t.target = $2 AND t.state IN ('pending', 'retrying')`;

export function prerequisiteMessage(prerequisites: readonly string[]): string {
  const names = prerequisites.join(', ');
  return `not called: prerequisite target ${names} did not complete (this target is ordered after it)`;
}

/**
 * Fails up to `limit` blocked tasks, each in its own transaction (request lock, then task).
 * Returns how many it failed. A chain (A failed, B after A, C after B) takes one call per
 * link; the caller repeats while it finds work.
 */
export async function failBlockedDependents(pool: pg.Pool, limit: number, actor: string): Promise<number> {
  const { rows } = await pool.query<{ request_id: string; target: string }>({
    name: 'sync_find_blocked',
    text: FIND_BLOCKED,
    values: [limit],
  });
  let failed = 0;
  for (const r of rows) if (await failDependent(pool, r.request_id, r.target, actor)) failed += 1;
  return failed;
}

async function failDependent(
  pool: pg.Pool,
  requestId: string,
  target: string,
  actor: string,
): Promise<boolean> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    // Locking query: request, then task, like every writer (see record-outcome.ts).
    const req = await client.query<{ status: string }>(
      `SELECT status FROM erasure_requests WHERE id = $1 FOR NO KEY UPDATE`,
      [requestId],
    );
    // Locking query: the task; NOWAIT is not needed, a dispatcher never holds it long.
    await client.query(`SELECT 1 FROM erasure_tasks WHERE request_id = $1 AND target = $2 FOR UPDATE`, [
      requestId,
      target,
    ]);
    const check = await client.query<{ failed_prerequisites: string[] | null; all_terminal: boolean | null }>(
      STILL_BLOCKED,
      [requestId, target],
    );
    const c = check.rows[0];
    const prerequisites = c?.failed_prerequisites ?? [];
    if (!req.rows[0] || !c?.all_terminal || prerequisites.length === 0) {
      await client.query('ROLLBACK');
      return false;
    }
    await client.query(
      `UPDATE erasure_tasks SET state = 'failed', last_error = $3, lease_owner = NULL, updated_at = now()
        WHERE request_id = $1 AND target = $2`,
      [requestId, target, prerequisiteMessage(prerequisites)],
    );
    await appendJournal(client, [
      {
        requestId,
        kind: 'task.failed',
        actor,
        detail: { target, cause: 'prerequisite_failed', prerequisites },
      },
    ]);
    await settleRequest(client, requestId, req.rows[0].status, actor);
    await client.query('COMMIT');
    return true;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}
