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
import { appendJournal, type JournalEntryInput } from './journal.ts';
import { beginKeyed } from './db/begin-keyed.ts';
import { replaceLoneSurrogates } from './lone-surrogates.ts';
import { writeCompletedEvents } from './write-completed-events.ts';

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

/**
 * Partner text made safe to store: control characters become spaces, lone surrogates U+FFFD
 * (as a UTF-8 decoder does), then it is cut to size.
 */
export function sanitizeDetail(detail: string | null): string | null {
  if (detail === null) return null;
  const clean = replaceLoneSurrogates(detail.replace(CONTROLS, ' ')).trim();
  // Array.from counts code points, so the cut never splits a surrogate pair.
  return Array.from(clean).slice(0, MAX_DETAIL_CHARS).join('');
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
  return (await applyAcks(pool, [ack], actor))[0]!;
}

/**
 * Applies a batch of acks in one transaction, with a fixed number of statements whatever
 * the batch size: the ack consumer's hot path (one COMMIT for hundreds of acks). Results
 * are per input, in input order, exactly as if the acks had been applied one by one in
 * that order: a second ack for the same task in the same batch is a duplicate of the first.
 * Throws only when the database fails, in which case nothing of the batch was written.
 */
export async function applyAcks(
  pool: pg.Pool,
  acks: readonly AckInput[],
  actor: string,
): Promise<AckResult[]> {
  if (acks.length === 0) return [];
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await beginKeyed(client);
    const results = await applyInTransaction(client, acks, actor);
    await client.query('COMMIT');
    return results;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}

/**
 * Locking query: the requests first, in id order, held to COMMIT. It serialises the acks of
 * one request, so the "are all tasks terminal?" count in settleRequests (a fresh READ
 * COMMITTED snapshot taken after this lock is granted) sees every other ack of these
 * requests that committed before us. With task locks alone, two acks for the last two tasks
 * would each see the other's task still open and neither would complete the request.
 * Request before task is the order cancel-request.ts, the relay's dispatch and the
 * redelivery service take them too, and id order keeps two batches from locking the same
 * requests in opposite orders, so none of them can deadlock. A primary before the requests
 * linked to it (settling updates those), as cancel-request.ts takes them too. NO KEY UPDATE:
 * it does not block inserts of rows that reference these.
 */
const LOCK_REQUESTS = `
SELECT id, status FROM erasure_requests WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE`;

/**
 * Locking query: the tasks named, in key order, so a dispatcher or relay updating one of
 * them (attempts, retry schedule) waits for us rather than overwriting the terminal state
 * we set.
 */
const LOCK_TASKS = `
SELECT t.request_id, t.target, t.state, t.outcome
  FROM erasure_tasks t
  JOIN unnest($1::uuid[], $2::text[]) AS k(request_id, target)
    ON t.request_id = k.request_id AND t.target = k.target
 ORDER BY t.request_id, t.target
   FOR UPDATE OF t`;

/**
 * The acked or failed tasks, one statement. A partner clock before the request existed, or
 * in the future, is not believed: now().
 */
const UPDATE_TASKS = `
UPDATE erasure_tasks t
   SET state = i.state, outcome = i.outcome, last_error = i.last_error, evidence = i.evidence,
       acked_at = CASE WHEN i.acked_at BETWEEN r.received_at AND now() THEN i.acked_at ELSE now() END,
       updated_at = now()
  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[], $7::timestamptz[])
         AS i(request_id, target, state, outcome, last_error, evidence, acked_at),
       erasure_requests r
 WHERE t.request_id = i.request_id AND t.target = i.target AND r.id = t.request_id`;

async function applyInTransaction(
  client: pg.PoolClient,
  acks: readonly AckInput[],
  actor: string,
): Promise<AckResult[]> {
  const requestIds = [...new Set(acks.map((a) => a.requestId))];
  const locked = await client.query<{ id: string; status: string }>({
    name: 'ack_lock_requests',
    text: LOCK_REQUESTS,
    values: [requestIds],
  });
  const statusOf = new Map(locked.rows.map((r) => [r.id, r.status]));
  const keyOf = (a: { requestId: string; target: string }) => `${a.requestId}\u0000${a.target}`;
  const wanted = new Map<string, AckInput>();
  for (const a of acks) if (statusOf.has(a.requestId)) wanted.set(keyOf(a), a);
  const tasks = await client.query<{
    request_id: string;
    target: string;
    state: string;
    outcome: string | null;
  }>({
    name: 'ack_lock_tasks',
    text: LOCK_TASKS,
    values: [[...wanted.values()].map((a) => a.requestId), [...wanted.values()].map((a) => a.target)],
  });
  // The tasks as this batch leaves them: a later ack in the batch sees an earlier one's effect.
  const taskOf = new Map(tasks.rows.map((t) => [keyOf({ requestId: t.request_id, target: t.target }), t]));

  const results: AckResult['result'][] = [];
  const updates: { ack: AckInput; change: ReturnType<typeof taskChange>; evidence: object; at: Date }[] = [];
  const journal: JournalEntryInput[] = [];
  for (const ack of acks) {
    if (!statusOf.has(ack.requestId)) {
      results.push('unknown_request');
      continue;
    }
    const current = taskOf.get(keyOf(ack));
    // Not one of this request's targets: someone acking a task that is not theirs. Refused.
    if (!current) {
      results.push('refused');
      continue;
    }
    const detail = sanitizeDetail(ack.detail);
    const change = taskChange(ack.status, detail);
    if (TERMINAL.includes(current.state)) {
      if (current.state !== change.state || current.outcome !== change.outcome) {
        journal.push({
          requestId: ack.requestId,
          kind: 'task.ack_ignored',
          actor,
          detail: { target: ack.target, status: ack.status, recordedState: current.state },
        });
      }
      results.push('duplicate');
      continue;
    }
    const at = Number.isFinite(ack.ackedAt.getTime()) ? ack.ackedAt : new Date();
    updates.push({
      ack,
      change,
      at,
      evidence: { status: ack.status, detail, eventId: ack.eventId ?? null, ackedAt: at.toISOString() },
    });
    current.state = change.state;
    current.outcome = change.outcome;
    // The journal outlives the erasure: the outcome and the detail's length, never its text.
    journal.push({
      requestId: ack.requestId,
      kind: change.state === 'acked' ? 'task.acked' : 'task.failed',
      actor,
      detail:
        change.state === 'acked'
          ? { target: ack.target, outcome: change.outcome, detailLength: detail?.length ?? 0 }
          : { target: ack.target, status: 'failed', detailLength: detail?.length ?? 0 },
    });
    results.push('applied');
  }

  if (updates.length > 0) {
    await client.query({
      name: 'ack_update_tasks',
      text: UPDATE_TASKS,
      values: [
        updates.map((u) => u.ack.requestId),
        updates.map((u) => u.ack.target),
        updates.map((u) => u.change.state),
        updates.map((u) => u.change.outcome),
        updates.map((u) => u.change.lastError),
        updates.map((u) => JSON.stringify(u.evidence)),
        updates.map((u) => u.at),
      ],
    });
  }
  await appendJournal(client, journal);
  const touched = [...new Set(updates.map((u) => u.ack.requestId))];
  const settled = await settleRequests(
    client,
    touched.map((id) => ({ id, status: statusOf.get(id)! })),
    actor,
  );
  return acks.map((ack, i) => {
    const result = results[i]!;
    if (result === 'unknown_request') return { result };
    return { result, requestStatus: settled.get(ack.requestId) ?? statusOf.get(ack.requestId)! };
  });
}

/**
 * Completes the request when its last task became terminal: `completed` if every task was
 * acked, `needs_attention` if any failed, with completed_at and its completed event, and
 * the requests linked to it with it (see COMPLETE_REQUESTS). Otherwise moves a `received`
 * or `scheduled` request to `in_progress`. Callers must hold the request row lock (see
 * LOCK_REQUESTS); any other writer that makes a task terminal should call this too.
 * Returns the status.
 */
export async function settleRequest(
  client: pg.ClientBase,
  requestId: string,
  status: string,
  actor: string,
): Promise<string> {
  const settled = await settleRequests(client, [{ id: requestId, status }], actor);
  return settled.get(requestId) ?? status;
}

/** Open, acked and not-acked task counts per request, read after the caller's task updates. */
const COUNT_OPEN_TASKS = `
SELECT request_id,
       count(*) FILTER (WHERE state NOT IN ('acked', 'failed', 'cancelled'))::int AS open,
       count(*) FILTER (WHERE state = 'acked')::int AS acked,
       count(*) FILTER (WHERE state <> 'acked')::int AS not_acked
  FROM erasure_tasks
 WHERE request_id = ANY ($1::uuid[])
 GROUP BY request_id`;

/** The first ack moves a request that has open tasks left to in_progress, with a journal entry. */
const START_REQUESTS = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::int[]) AS i(id, open)
),
moved AS (
  UPDATE erasure_requests r
     SET status = 'in_progress'
    FROM input i
   WHERE r.id = i.id AND r.status IN ('received', 'scheduled')
  RETURNING r.id, i.open
),
journal_row AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT id, 'request.in_progress', $3, jsonb_build_object('openTasks', open) FROM moved ORDER BY id
)
SELECT id FROM moved`;

/**
 * The requests whose every task is terminal, in one statement: the status moves, with
 * completed_at (for needs_attention too: it is when every task became terminal), and the
 * journal says so. Its guard (`status NOT IN` the final ones, under the request locks) lets
 * exactly one caller settle each request, and so write its completed event (the caller
 * does, with the ids returned, in a later statement of this transaction: the task updates
 * are visible to it, and the request locks keep every other task writer out meanwhile).
 *
 * The requests linked to these (same subject, not fanned out again: these tasks did their
 * erasure) settle with them, with the same status and their own journal entry; one
 * withdrawn before (cancelled) stays as it is. Their rows are locked here, after their
 * primary's: cancel-request.ts takes a linked request's primary before the request too.
 */
const COMPLETE_REQUESTS = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[]) AS i(id, final_status, acked, not_acked)
),
done AS (
  UPDATE erasure_requests r
     SET status = i.final_status, completed_at = now()
    FROM input i
   WHERE r.id = i.id AND r.status NOT IN ('completed', 'needs_attention', 'cancelled')
  RETURNING r.id, r.status, i.acked, i.not_acked
),
linked AS (
  UPDATE erasure_requests l
     SET status = d.status, completed_at = now()
    FROM done d
   WHERE l.linked_to = d.id AND l.status NOT IN ('completed', 'needs_attention', 'cancelled')
  RETURNING l.id, l.status, l.linked_to, d.acked, d.not_acked
),
finished AS (
  SELECT id, status, NULL::uuid AS linked_to, acked, not_acked FROM done
  UNION ALL
  SELECT id, status, linked_to, acked, not_acked FROM linked
),
journal_row AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT id, 'request.completed', $5,
         jsonb_strip_nulls(jsonb_build_object(
           'status', status, 'acked', acked, 'notAcked', not_acked, 'linkedTo', linked_to))
    FROM finished
   ORDER BY id
)
SELECT id, status, coalesce(linked_to, id) AS tasks_of
  FROM finished
 ORDER BY linked_to IS NOT NULL, id`;

/**
 * settleRequest for many requests at once (every one locked by the caller): a fixed number
 * of statements. Returns the status of each request that changed, linked requests that
 * settled with their primary included.
 */
export async function settleRequests(
  client: pg.ClientBase,
  requests: readonly { id: string; status: string }[],
  actor: string,
): Promise<Map<string, string>> {
  const changed = new Map<string, string>();
  if (requests.length === 0) return changed;
  const counts = await client.query<{ request_id: string; open: number; acked: number; not_acked: number }>({
    name: 'settle_count_open_tasks',
    text: COUNT_OPEN_TASKS,
    values: [requests.map((r) => r.id)],
  });
  const open = counts.rows.filter((c) => c.open > 0);
  const finished = counts.rows.filter((c) => c.open === 0);
  if (open.length > 0) {
    const moved = await client.query<{ id: string }>({
      name: 'settle_start_requests',
      text: START_REQUESTS,
      values: [open.map((c) => c.request_id), open.map((c) => c.open), actor],
    });
    for (const r of moved.rows) changed.set(r.id, 'in_progress');
  }
  if (finished.length > 0) {
    const done = await client.query<{ id: string; status: string; tasks_of: string }>({
      name: 'settle_complete_requests',
      text: COMPLETE_REQUESTS,
      values: [
        finished.map((c) => c.request_id),
        finished.map((c) => (c.not_acked === 0 ? 'completed' : 'needs_attention')),
        finished.map((c) => c.acked),
        finished.map((c) => c.not_acked),
        actor,
      ],
    });
    await writeCompletedEvents(
      client,
      done.rows.map((r) => ({ id: r.id, tasksOf: r.tasks_of })),
    );
    for (const r of done.rows) changed.set(r.id, r.status);
  }
  return changed;
}
