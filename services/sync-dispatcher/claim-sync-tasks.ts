import type pg from 'pg';
import type { Identifier } from '../shared/identifiers.ts';
import type { TargetHttp } from '../shared/validate-target.ts';

/** A sync_http task this replica now holds under a lease, with what the call needs. */
export interface ClaimedTask {
  readonly requestId: string;
  readonly target: string;
  /** This call's attempt number (1 for the first); the claim counted it. */
  readonly attempt: number;
  /** PRIORITY_RANK of the request. */
  readonly priority: number;
  /** When it became due (epoch ms): for ordering, and the due time a hand-back restores. */
  readonly dueAt: number;
  /**
   * The state the claim found, to which a hand-back returns it. `dispatched`: a retake (the
   * lease of a replica that stopped answering ran out).
   */
  readonly claimedFrom: 'pending' | 'retrying' | 'dispatched';
  /** Milliseconds since the task's first call (0 on the first). */
  readonly ageMs: number;
  /** The target's settings as they are now (a PATCH applies from the next call on). */
  readonly http: TargetHttp;
  /** Subject identifiers: never logged, never journaled. */
  readonly identifiers: Identifier[];
}

/**
 * Claims due sync_http tasks for several targets in one statement, up to a limit per target
 * (each target's free capacity), legal before normal before bulk, then longest due first.
 *
 * Due: pending or retrying with next_attempt_at passed, or dispatched by a replica whose
 * lease (next_attempt_at while lease_owner is set) ran out: that replica crashed or hung
 * mid-call, and the retake sends the same Idempotency-Key. Only for an unpaused target,
 * a request still open (not cancelled or finished) and past its notBefore, and only once
 * every task of the same request for a target in this target's `after` list is acked
 * (a failed prerequisite is handled by fail-blocked-dependents.ts, never waited on forever).
 *
 * Locking query: FOR UPDATE OF t SKIP LOCKED, so replicas claim disjoint tasks instead of
 * queueing behind each other, and a task an ack is settling right now is passed over. FOR
 * NO KEY UPDATE OF r SKIP LOCKED takes the request row too, without waiting: it lets this
 * statement move the request to in_progress, and it makes cancel-request.ts (which locks the
 * request FOR UPDATE, then checks that no task left `pending`) wait for this claim and see
 * it, so a call never starts for a request cancelled meanwhile. Neither lock ever waits, so
 * this statement cannot join a deadlock with the request-then-task order of every writer.
 * The targets row is not locked: pausing a target must not wait for a claim.
 */
const CLAIM_SYNC_TASKS = `
WITH cap AS (
  SELECT * FROM unnest($1::text[], $2::int[]) AS c(target, n)
),
due AS (
  SELECT d.*
    FROM cap c
   CROSS JOIN LATERAL (
         SELECT t.request_id, t.target, t.state AS prev_state, t.next_attempt_at AS due_at,
                r.identifiers, g.http, (g.http->>'timeoutMs')::int AS timeout_ms
           FROM erasure_tasks t
           JOIN erasure_requests r ON r.id = t.request_id
           JOIN targets g ON g.name = t.target
          WHERE t.target = c.target
            AND (t.state IN ('pending', 'retrying') OR t.lease_owner IS NOT NULL)
            AND t.state IN ('pending', 'retrying', 'dispatched')
            AND t.next_attempt_at <= now()
            AND g.kind = 'sync_http'
            AND NOT g.paused
            AND r.status IN ('received', 'scheduled', 'in_progress')
            AND (r.not_before IS NULL OR r.not_before <= now())
            AND NOT EXISTS (
                  SELECT 1
                    FROM erasure_tasks p
                   WHERE p.request_id = t.request_id
                     AND p.target = ANY (g.after_targets)
                     AND p.state <> 'acked')
          ORDER BY t.priority, t.next_attempt_at
          LIMIT c.n
            FOR UPDATE OF t SKIP LOCKED
            FOR NO KEY UPDATE OF r SKIP LOCKED) d
),
claimed AS (
  UPDATE erasure_tasks t
     SET state = 'dispatched',
         attempts = t.attempts + 1,
         dispatched_at = coalesce(t.dispatched_at, now()),
         lease_owner = $3,
         next_attempt_at = now() + (d.timeout_ms + $4::int) * interval '1 millisecond',
         last_error = CASE WHEN d.prev_state = 'dispatched' THEN $6 ELSE t.last_error END,
         updated_at = now()
    FROM due d
   WHERE t.request_id = d.request_id AND t.target = d.target
  RETURNING t.request_id, t.target, t.attempts, t.priority, d.due_at, d.prev_state, d.identifiers, d.http,
            (extract(epoch FROM now() - t.dispatched_at) * 1000)::bigint AS age_ms
),
started AS (
  UPDATE erasure_requests r
     SET status = 'in_progress'
   WHERE r.id IN (SELECT request_id FROM claimed)
     AND r.status IN ('received', 'scheduled')
  RETURNING r.id
),
journal_rows AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT c.request_id, 'task.dispatched', $5,
         jsonb_build_object('target', c.target, 'attempt', c.attempts, 'retaken', c.prev_state = 'dispatched')
    FROM claimed c
   UNION ALL
  SELECT s.id, 'request.in_progress', $5, jsonb_build_object('startedBy', 'sync_call')
    FROM started s
)
SELECT * FROM claimed`;

/** Said on a retaken task until its call is answered. */
export const RETAKEN_MESSAGE =
  'the previous call was not answered before its lease ran out (dispatcher stopped or hung); called again with the same Idempotency-Key';

interface Row {
  request_id: string;
  target: string;
  attempts: number;
  priority: number;
  due_at: Date;
  prev_state: 'pending' | 'retrying' | 'dispatched';
  identifiers: Identifier[];
  http: TargetHttp;
  age_ms: string;
}

/**
 * One statement, so it commits on its own: the claim, the request's move to in_progress and
 * the journal entries land together or not at all.
 *
 * @param leaseMarginMs added to each target's timeoutMs to make the lease.
 */
export async function claimSyncTasks(
  pool: pg.Pool,
  input: { targets: string[]; limits: number[]; owner: string; leaseMarginMs: number; actor: string },
): Promise<ClaimedTask[]> {
  if (input.targets.length === 0) return [];
  const { rows } = await pool.query<Row>({
    name: 'sync_claim_tasks',
    text: CLAIM_SYNC_TASKS,
    values: [input.targets, input.limits, input.owner, input.leaseMarginMs, input.actor, RETAKEN_MESSAGE],
  });
  return rows.map((r) => ({
    requestId: r.request_id,
    target: r.target,
    attempt: r.attempts,
    priority: r.priority,
    dueAt: r.due_at.getTime(),
    claimedFrom: r.prev_state,
    ageMs: Number(r.age_ms),
    http: r.http,
    identifiers: r.identifiers,
  }));
}

const EXTEND_LEASE = `
UPDATE erasure_tasks
   SET next_attempt_at = now() + $5::int * interval '1 millisecond'
 WHERE request_id = $1 AND target = $2 AND state = 'dispatched' AND attempts = $3 AND lease_owner = $4`;

/** Lengthens a held lease (a task that makes several calls); false if it is no longer ours. */
export async function extendLease(
  pool: pg.Pool,
  task: { requestId: string; target: string; attempt: number },
  owner: string,
  ms: number,
): Promise<boolean> {
  const res = await pool.query(EXTEND_LEASE, [
    task.requestId,
    task.target,
    task.attempt,
    owner,
    Math.ceil(ms),
  ]);
  return (res.rowCount ?? 0) > 0;
}
