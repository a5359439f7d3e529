/**
 * Applies a partner's acknowledgement to its task: the one implementation behind both the
 * Kafka ack consumer and POST /v1/acks, so the two paths cannot disagree.
 *
 * Idempotency, precisely: the first terminal outcome of a task wins. Once a task is acked,
 * failed or cancelled, every later ack for it (a redelivered duplicate, an ack that arrives
 * out of order, or one that contradicts the first) changes no task, request or outbox row;
 * a contradicting one only leaves a `task.ack_ignored` journal entry so a person can see it.
 */
import type pg from 'pg';
import { appendJournal } from './journal.ts';
import { TOPICS } from './event-codec.ts';

export const ACK_STATUSES = ['deleted', 'not_found', 'failed'] as const;
export type AckStatus = (typeof ACK_STATUSES)[number];

export interface AckInput {
  requestId: string;
  target: string;
  status: AckStatus;
  /** Partner free text (evidence or failure cause): untrusted, may hold personal data. */
  detail: string | null;
  /** When the partner says it finished; clamped into [request received, now] when stored. */
  ackedAt: Date;
  eventId?: string | null;
}

export interface AckResult {
  result: 'applied' | 'duplicate' | 'refused' | 'unknown_request';
  /** The request's status after the ack (absent for an unknown request). */
  requestStatus?: string;
}

/** Longest partner text kept, in characters (last_error and evidence.detail). */
export const MAX_DETAIL_CHARS = 1000;
const TERMINAL = ['acked', 'failed', 'cancelled'];
// C0, DEL and C1 controls: never needed in a message a person reads, and NUL breaks text columns.
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]+/g;

/** Partner text made safe to store: control characters become spaces, then it is cut to size. */
export function sanitizeDetail(detail: string | null): string | null {
  if (detail === null) return null;
  // Array.from counts code points, so the cut never splits a surrogate pair.
  return Array.from(detail.replace(CONTROLS, ' ').trim()).slice(0, MAX_DETAIL_CHARS).join('');
}

/** The task columns an ack sets: acked with an outcome, or failed with the cause. */
export function taskChange(status: AckStatus, detail: string | null) {
  return status === 'failed'
    ? { state: 'failed' as const, outcome: null, lastError: detail ?? 'the target reported failure' }
    : { state: 'acked' as const, outcome: status, lastError: null };
}

/**
 * Applies one ack in one transaction. Never throws for a bad ack (the result says what
 * happened); throws only when the database fails, in which case nothing was written.
 */
export async function applyAck(pool: pg.Pool, ack: AckInput, actor: string): Promise<AckResult> {
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await client.query('BEGIN');
    const result = await applyInTransaction(client, ack, actor);
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}

async function applyInTransaction(client: pg.PoolClient, ack: AckInput, actor: string): Promise<AckResult> {
  // Locking query: the request row first, held to COMMIT. It serialises the acks of one
  // request, so the "are all tasks terminal?" check below (a fresh READ COMMITTED snapshot
  // taken after this lock is granted) sees every other ack of this request that committed
  // before us. With task locks alone, two acks for the last two tasks would each see the
  // other's task still open and neither would complete the request. Request before task is
  // the order cancel-request.ts takes them too, so the two cannot deadlock. NO KEY UPDATE:
  // it does not block inserts of rows that reference this one.
  const req = await client.query<{ status: string }>(
    `SELECT status FROM erasure_requests WHERE id = $1 FOR NO KEY UPDATE`,
    [ack.requestId],
  );
  const request = req.rows[0];
  if (!request) return { result: 'unknown_request' };

  // Locking query: the task row, so a dispatcher or relay updating the same task (attempts,
  // retry schedule) waits for us rather than overwriting the terminal state we set.
  const task = await client.query<{ state: string; outcome: string | null }>(
    `SELECT state, outcome FROM erasure_tasks WHERE request_id = $1 AND target = $2 FOR UPDATE`,
    [ack.requestId, ack.target],
  );
  const current = task.rows[0];
  // Not one of this request's targets: someone acking a task that is not theirs. Refused.
  if (!current) return { result: 'refused', requestStatus: request.status };

  const detail = sanitizeDetail(ack.detail);
  const change = taskChange(ack.status, detail);
  if (TERMINAL.includes(current.state)) {
    const same = current.state === change.state && current.outcome === change.outcome;
    if (!same) {
      await appendJournal(client, [
        {
          requestId: ack.requestId,
          kind: 'task.ack_ignored',
          actor,
          detail: { target: ack.target, status: ack.status, recordedState: current.state },
        },
      ]);
    }
    return { result: 'duplicate', requestStatus: request.status };
  }

  const claimed = Number.isFinite(ack.ackedAt.getTime()) ? ack.ackedAt : new Date();
  const evidence = {
    status: ack.status,
    detail,
    eventId: ack.eventId ?? null,
    ackedAt: claimed.toISOString(),
  };
  // A partner clock before the request existed, or in the future, is not believed: now().
  await client.query(
    `UPDATE erasure_tasks t
        SET state = $3, outcome = $4, last_error = $5, evidence = $6,
            acked_at = CASE WHEN $7::timestamptz BETWEEN r.received_at AND now() THEN $7::timestamptz ELSE now() END,
            updated_at = now()
       FROM erasure_requests r
      WHERE t.request_id = $1 AND t.target = $2 AND r.id = t.request_id`,
    [ack.requestId, ack.target, change.state, change.outcome, change.lastError, evidence, claimed],
  );
  // The journal outlives the erasure: the outcome and the detail's length, never its text.
  await appendJournal(client, [
    {
      requestId: ack.requestId,
      kind: change.state === 'acked' ? 'task.acked' : 'task.failed',
      actor,
      detail:
        change.state === 'acked'
          ? { target: ack.target, outcome: change.outcome, detailLength: detail?.length ?? 0 }
          : { target: ack.target, status: 'failed', detailLength: detail?.length ?? 0 },
    },
  ]);
  const requestStatus = await settleRequest(client, ack.requestId, request.status, actor);
  return { result: 'applied', requestStatus };
}

/**
 * Completes the request when its last task became terminal: `completed` if every task was
 * acked, `needs_attention` if any failed. One statement moves the status, writes the
 * completed event to the outbox and the journal entry; its guard (`status NOT IN` the final
 * ones, under the request lock) lets exactly one caller emit the event. Otherwise moves a
 * `scheduled` request to `in_progress` on its first ack. Callers must hold the request row
 * lock (see above); any other writer that makes a task terminal should call this too.
 */
export async function settleRequest(
  client: pg.ClientBase,
  requestId: string,
  status: string,
  actor: string,
): Promise<string> {
  const counts = await client.query<{ open: number; failed: number }>(
    `SELECT count(*) FILTER (WHERE state NOT IN ('acked', 'failed', 'cancelled'))::int AS open,
            count(*) FILTER (WHERE state <> 'acked')::int AS failed
       FROM erasure_tasks WHERE request_id = $1`,
    [requestId],
  );
  const { open, failed } = counts.rows[0]!;
  if (open > 0) {
    const moved = await client.query(
      `UPDATE erasure_requests SET status = 'in_progress' WHERE id = $1 AND status IN ('received', 'scheduled')`,
      [requestId],
    );
    if (!moved.rowCount) return status;
    await appendJournal(client, [
      { requestId, kind: 'request.in_progress', actor, detail: { openTasks: open } },
    ]);
    return 'in_progress';
  }
  const done = await client.query<{ status: string }>(COMPLETE_REQUEST, [
    requestId,
    failed === 0 ? 'completed' : 'needs_attention',
    TOPICS.completed,
    actor,
  ]);
  return done.rows[0]?.status ?? status;
}

// Outcomes are read in the same statement as the status change: the caller's task update
// is already visible to it (an earlier statement of this transaction).
const COMPLETE_REQUEST = `
WITH done AS (
  UPDATE erasure_requests
     SET status = $2, completed_at = CASE WHEN $2 = 'completed' THEN now() END
   WHERE id = $1 AND status NOT IN ('completed', 'needs_attention', 'cancelled')
  RETURNING id, status, subject_hash
),
outcomes AS (
  SELECT coalesce(jsonb_agg(jsonb_build_object(
           'target', target, 'state', state, 'outcome', outcome, 'ackedAt', acked_at, 'attempts', attempts)
           ORDER BY target), '[]'::jsonb) AS list,
         count(*) FILTER (WHERE state = 'acked') AS acked,
         count(*) FILTER (WHERE state <> 'acked') AS not_acked
    FROM erasure_tasks WHERE request_id = $1
),
event AS (
  INSERT INTO outbox (topic, event_key, payload, request_id)
  SELECT $3, encode(d.subject_hash, 'hex'),
         jsonb_build_object('requestId', d.id, 'completedAt', now(), 'status', d.status, 'outcomes', o.list),
         d.id
    FROM done d CROSS JOIN outcomes o
),
journal_row AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT d.id, 'request.completed', $4,
         jsonb_build_object('status', d.status, 'acked', o.acked, 'notAcked', o.not_acked)
    FROM done d CROSS JOIN outcomes o
)
SELECT status FROM done`;
