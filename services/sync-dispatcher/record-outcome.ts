import type pg from 'pg';
import { settleRequest } from '../shared/apply-ack.ts';
import { appendJournal, type JournalEntryInput } from '../shared/journal.ts';

/** What a claimed task's call(s) came to; written by recordOutcomes. */
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
    }
  | {
      /**
       * The target's gate did not admit the first call in time (run-task.ts): the claim is
       * undone, journaled as `task.released`. The task goes back to `restore`, due at `dueAt`
       * (epoch ms) as before, and the attempt the claim counted is taken back: no call was made.
       */
      readonly state: 'handed_back';
      readonly restore: 'pending' | 'retrying';
      readonly dueAt: number;
      readonly journal: Record<string, unknown>;
    };

export interface HeldTask {
  readonly requestId: string;
  readonly target: string;
  /** The attempt this replica claimed. */
  readonly attempt: number;
}

export interface Recording {
  readonly task: HeldTask;
  readonly result: TaskResult;
}

/**
 * Locking query: the requests, in id order, held to COMMIT: the order apply-ack.ts,
 * cancel-request.ts and mark-sent.ts take them (request first, then task), and id order so
 * two replicas' batches never lock the same requests in opposite orders. The request lock
 * also makes settleRequest's "all tasks terminal?" count see every other task that settled
 * before us, so exactly one writer completes a request.
 */
const LOCK_REQUESTS = `
SELECT id, status FROM erasure_requests WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE`;

/** Locking query: the tasks, so no other writer changes one between our check and update. */
const LOCK_TASKS = `
SELECT t.request_id, t.target, t.state, t.attempts, t.lease_owner
  FROM erasure_tasks t
  JOIN unnest($1::uuid[], $2::text[]) AS i(request_id, target)
    ON t.request_id = i.request_id AND t.target = i.target
 ORDER BY t.request_id, t.target
   FOR UPDATE OF t`;

/**
 * Every result of the batch in one statement; the lease is cleared either way. A hand-back
 * undoes its claim: the attempt the claim counted made no call, so it is taken back; the
 * due time returns to `due_at` and last_error stays as it is; a task back at zero attempts
 * was never called, so it has no dispatched_at (which the claim had set).
 */
const WRITE_RESULTS = `
UPDATE erasure_tasks t
   SET state = i.state,
       outcome = i.outcome,
       evidence = coalesce(i.evidence, t.evidence),
       last_error = CASE WHEN i.handed_back THEN t.last_error ELSE i.last_error END,
       attempts = CASE WHEN i.handed_back THEN t.attempts - 1 ELSE t.attempts END,
       dispatched_at = CASE WHEN i.handed_back AND t.attempts = 1 THEN NULL ELSE t.dispatched_at END,
       acked_at = CASE WHEN i.state = 'acked' THEN now() ELSE t.acked_at END,
       next_attempt_at = CASE WHEN i.handed_back THEN i.due_at
                              WHEN i.state = 'retrying' THEN now() + i.delay_ms * interval '1 millisecond'
                              ELSE t.next_attempt_at END,
       lease_owner = NULL,
       updated_at = now()
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::text[], $7::bigint[],
              $8::boolean[], $9::timestamptz[])
    AS i(request_id, target, state, outcome, evidence, last_error, delay_ms, handed_back, due_at)
 WHERE t.request_id = i.request_id AND t.target = i.target`;

/**
 * A hand-back undoes a claim, and the claim may have been what moved the request to
 * in_progress (claim-sync-tasks.ts). When nothing of the request has started since (every
 * task pending, never called, unleased: no call made, no event dispatched), it goes back to
 * scheduled, as the accept left it. Otherwise a request nothing was ever sent for could not
 * be cancelled (cancel-request.ts takes only received or scheduled) and a later request for
 * its subject would fan out on its own instead of linking to it. Under the request locks.
 */
const UNSTART_REQUESTS = `
UPDATE erasure_requests r
   SET status = 'scheduled'
 WHERE r.id = ANY ($1::uuid[])
   AND r.status = 'in_progress'
   AND NOT EXISTS (
         SELECT 1
           FROM erasure_tasks t
          WHERE t.request_id = r.id
            AND (t.state <> 'pending' OR t.attempts > 0 OR t.lease_owner IS NOT NULL))
RETURNING r.id`;

/**
 * Writes a batch of outcomes in one transaction: each task's new state, its journal entry,
 * and, for a request whose task became terminal, settleRequest (completed / needs_attention
 * and the completed event, exactly once). One commit for many calls: under load this is
 * what lets the dispatcher keep up, as a single commit per call would not.
 *
 * A result is applied only if its task is still this claim's: dispatched, same attempt,
 * leased by us. A retake by another replica (our lease ran out) or a terminal state set
 * meanwhile (an ack through the API) wins, and that answer is dropped: `stale`.
 *
 * @returns per recording, in order: recorded or stale. Throws when the database fails; then
 *   nothing of the batch was written.
 */
export async function recordOutcomes(
  pool: pg.Pool,
  recordings: readonly Recording[],
  owner: string,
  actor: string,
): Promise<('recorded' | 'stale')[]> {
  if (recordings.length === 0) return [];
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const ids = [...new Set(recordings.map((r) => r.task.requestId))];
    const req = await client.query<{ id: string; status: string }>({
      name: 'sync_lock_requests',
      text: LOCK_REQUESTS,
      values: [ids],
    });
    const statusOf = new Map(req.rows.map((r) => [r.id, r.status]));
    const cur = await client.query<{
      request_id: string;
      target: string;
      state: string;
      attempts: number;
      lease_owner: string | null;
    }>({
      name: 'sync_lock_tasks',
      text: LOCK_TASKS,
      values: [recordings.map((r) => r.task.requestId), recordings.map((r) => r.task.target)],
    });
    const held = new Set(
      cur.rows
        .filter((r) => r.state === 'dispatched' && r.lease_owner === owner && statusOf.has(r.request_id))
        .map((r) => `${r.request_id}/${r.target}/${r.attempts}`),
    );
    const fresh = recordings.map((r) => held.has(`${r.task.requestId}/${r.task.target}/${r.task.attempt}`));
    const apply = recordings.filter((_, i) => fresh[i]);
    if (apply.length > 0) {
      await client.query({
        name: 'sync_write_results',
        text: WRITE_RESULTS,
        values: [
          apply.map((r) => r.task.requestId),
          apply.map((r) => r.task.target),
          apply.map((r) => (r.result.state === 'handed_back' ? r.result.restore : r.result.state)),
          apply.map((r) => (r.result.state === 'acked' ? r.result.outcome : null)),
          apply.map((r) =>
            (r.result.state === 'acked' || r.result.state === 'failed') && r.result.evidence
              ? JSON.stringify(r.result.evidence)
              : null,
          ),
          apply.map((r) =>
            r.result.state === 'retrying' || r.result.state === 'failed' ? r.result.lastError : null,
          ),
          apply.map((r) => (r.result.state === 'retrying' ? Math.max(0, Math.round(r.result.delayMs)) : 0)),
          apply.map((r) => r.result.state === 'handed_back'),
          apply.map((r) =>
            r.result.state === 'handed_back' ? new Date(r.result.dueAt).toISOString() : null,
          ),
        ],
      });
      await appendJournal(
        client,
        apply.map((r) => journalEntry(r, actor)),
      );
      const handedBack = [
        ...new Set(apply.filter((r) => r.result.state === 'handed_back').map((r) => r.task.requestId)),
      ].filter((id) => statusOf.get(id) === 'in_progress');
      if (handedBack.length > 0) {
        const unstarted = await client.query<{ id: string }>({
          name: 'sync_unstart_requests',
          text: UNSTART_REQUESTS,
          values: [handedBack],
        });
        await appendJournal(
          client,
          unstarted.rows.map((r) => ({
            requestId: r.id,
            kind: 'request.scheduled',
            actor,
            detail: { cause: 'handed_back' },
          })),
        );
      }
      // A request whose task became terminal may be complete now; settle each once, in id order.
      const settle = [
        ...new Set(
          apply
            .filter((r) => r.result.state === 'acked' || r.result.state === 'failed')
            .map((r) => r.task.requestId),
        ),
      ];
      for (const id of settle.sort()) await settleRequest(client, id, statusOf.get(id)!, actor);
    }
    await client.query('COMMIT');
    return fresh.map((f) => (f ? 'recorded' : 'stale'));
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}

function journalEntry({ task, result }: Recording, actor: string): JournalEntryInput {
  const kind =
    result.state === 'acked'
      ? 'task.acked'
      : result.state === 'failed'
        ? 'task.failed'
        : result.state === 'handed_back'
          ? 'task.released'
          : result.kind;
  return { requestId: task.requestId, kind, actor, detail: result.journal };
}
