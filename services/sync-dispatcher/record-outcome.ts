import type pg from 'pg';
import { settleRequest } from '../shared/apply-ack.ts';
import { appendJournal } from '../shared/journal.ts';

/** What a claimed task's call(s) came to; written by recordOutcome. */
export type TaskResult =
  | {
      readonly state: 'acked';
      readonly outcome: 'deleted' | 'not_found';
      /** Kept on the task: partner text, sanitised and cut; never logged. */
      readonly evidence: Record<string, unknown>;
      readonly journal: Record<string, unknown>;
    }
  | {
      readonly state: 'retrying';
      /** 'task.released' when the call was cut short by our own shutdown. */
      readonly kind: 'task.retrying' | 'task.released';
      readonly delayMs: number;
      readonly lastError: string;
      readonly journal: Record<string, unknown>;
    }
  | {
      readonly state: 'failed';
      readonly lastError: string;
      readonly evidence: Record<string, unknown> | null;
      readonly journal: Record<string, unknown>;
    };

export interface HeldTask {
  readonly requestId: string;
  readonly target: string;
  /** The attempt this replica claimed. */
  readonly attempt: number;
}

/**
 * The task's new state, the journal entry, and (for a terminal state) the request settled,
 * in one transaction. Applied only if the task is still this claim's: dispatched, same
 * attempt, leased by us. A retake by another replica (our lease ran out) or a terminal state
 * set meanwhile (an ack through the API) wins, and this answer is dropped: `stale`.
 */
export async function recordOutcome(
  pool: pg.Pool,
  task: HeldTask,
  owner: string,
  result: TaskResult,
  actor: string,
): Promise<'recorded' | 'stale'> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    // Locking query: the request row first, then the task, the order apply-ack.ts,
    // cancel-request.ts and mark-sent.ts take them, so none of us can deadlock. The request
    // lock also makes settleRequest's "all tasks terminal?" count see every other task that
    // settled before us, so exactly one writer completes the request.
    const req = await client.query<{ status: string }>({
      name: 'sync_lock_request',
      text: `SELECT status FROM erasure_requests WHERE id = $1 FOR NO KEY UPDATE`,
      values: [task.requestId],
    });
    // Locking query: the task, so no other writer changes it between our check and update.
    const cur = await client.query<{ state: string; attempts: number; lease_owner: string | null }>({
      name: 'sync_lock_task',
      text: `SELECT state, attempts, lease_owner FROM erasure_tasks WHERE request_id = $1 AND target = $2 FOR UPDATE`,
      values: [task.requestId, task.target],
    });
    const row = cur.rows[0];
    const request = req.rows[0];
    if (
      !request ||
      !row ||
      row.state !== 'dispatched' ||
      row.attempts !== task.attempt ||
      row.lease_owner !== owner
    ) {
      await client.query('ROLLBACK');
      return 'stale';
    }
    if (result.state === 'acked') {
      await client.query({
        name: 'sync_task_acked',
        text: `UPDATE erasure_tasks
                  SET state = 'acked', outcome = $3, evidence = $4, last_error = NULL, acked_at = now(),
                      lease_owner = NULL, updated_at = now()
                WHERE request_id = $1 AND target = $2`,
        values: [task.requestId, task.target, result.outcome, result.evidence],
      });
    } else if (result.state === 'retrying') {
      await client.query({
        name: 'sync_task_retrying',
        text: `UPDATE erasure_tasks
                  SET state = 'retrying', last_error = $3, lease_owner = NULL, updated_at = now(),
                      next_attempt_at = now() + $4::bigint * interval '1 millisecond'
                WHERE request_id = $1 AND target = $2`,
        values: [task.requestId, task.target, result.lastError, Math.max(0, Math.round(result.delayMs))],
      });
    } else {
      await client.query({
        name: 'sync_task_failed',
        text: `UPDATE erasure_tasks
                  SET state = 'failed', outcome = NULL, last_error = $3, evidence = coalesce($4, evidence),
                      lease_owner = NULL, updated_at = now()
                WHERE request_id = $1 AND target = $2`,
        values: [task.requestId, task.target, result.lastError, result.evidence],
      });
    }
    const kind =
      result.state === 'acked' ? 'task.acked' : result.state === 'failed' ? 'task.failed' : result.kind;
    await appendJournal(client, [{ requestId: task.requestId, kind, actor, detail: result.journal }]);
    if (result.state !== 'retrying') await settleRequest(client, task.requestId, request.status, actor);
    await client.query('COMMIT');
    return 'recorded';
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}
