import type pg from 'pg';
import { problem } from '../../shared/errors.ts';

export interface TaskView {
  target: string;
  kind: string;
  state: string;
  outcome: string | null;
  attempts: number;
  nextAttemptAt: string | null;
  lastError: string | null;
  dispatchedAt: string | null;
  ackedAt: string | null;
  evidence: unknown;
  paused: boolean;
  /** Sent its event (or called) and the ack SLA passed with no answer; false once terminal. */
  late: boolean;
  /** Deliveries of the event to this target so far (the first one included): the attempts column. */
  deliveries: number;
}

export interface RequestView {
  id: string;
  status: string;
  reason: string;
  priority: string;
  receivedAt: string;
  notBefore: string | null;
  deadline: string;
  overdue: boolean;
  completedAt: string | null;
  cancelledAt: string | null;
  linkedTo: string | null;
  identifierTypes: string[];
  tasks: TaskView[];
  /** Targets whose task is late (see TaskView.late): who to chase. */
  lateTargets: string[];
  journal: { seq: number | null; kind: string; at: string; detail: unknown }[];
  links: { self: string };
}

const iso = (d: Date | null) => (d ? d.toISOString() : null);

// A linked request shows its primary's status and tasks: it was deliberately not fanned
// out again, so its progress is the primary's progress. Once cancelled itself (withdrawn
// before the primary was dispatched) it shows that.
const STATUS_SQL = `CASE WHEN r.status = 'cancelled' THEN r.status ELSE coalesce(p.status, r.status) END`;
const COMPLETED_AT_SQL = `CASE WHEN r.status = 'cancelled' THEN NULL ELSE coalesce(p.completed_at, r.completed_at) END`;

const GET_REQUEST = `
SELECT r.id, r.owner, r.reason, r.priority, r.received_at, r.not_before, r.deadline, r.cancelled_at, r.linked_to,
       ${STATUS_SQL} AS status,
       ${COMPLETED_AT_SQL} AS completed_at,
       ARRAY(SELECT DISTINCT x->>'type' FROM jsonb_array_elements(r.identifiers) x ORDER BY 1) AS identifier_types
  FROM erasure_requests r
  LEFT JOIN erasure_requests p ON p.id = r.linked_to
 WHERE r.id = $1`;

// Late: the SLA counts from the first dispatch, as the partner's promise does; a task already
// redelivered stays late until it answers (a redelivery gives it another chance, not a new
// deadline). Computed here, with the database's clock, like the redelivery service's.
const GET_TASKS = `
SELECT t.target, g.kind, t.state, t.outcome, t.attempts, t.next_attempt_at, t.last_error, t.dispatched_at,
       t.acked_at, t.evidence, g.paused,
       coalesce(t.state IN ('dispatched', 'retrying')
                AND t.dispatched_at + g.ack_sla_seconds * interval '1 second' <= now(), false) AS late
  FROM erasure_tasks t
  JOIN targets g ON g.name = t.target
 WHERE t.request_id = $1
 ORDER BY t.target`;

const GET_JOURNAL = `
SELECT chain_seq, kind, at, detail
  FROM journal
 WHERE request_id = ANY ($1::uuid[])
 ORDER BY journal.id`;

export function isUuid(s: string): boolean {
  return /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(s);
}

/**
 * One request with its tasks and journal. A request of another owner answers 404, the
 * same as one that does not exist, so ids cannot be probed across owners. `journal: false`
 * leaves the journal unread (empty), for a caller that reads the entries itself (the report).
 */
export async function getRequest(
  pool: pg.Pool,
  id: string,
  viewer: { owner: string; admin: boolean },
  opts: { journal?: boolean } = {},
) {
  if (!isUuid(id)) throw problem('ERR_NOT_FOUND', 'no such erasure request');
  const { rows } = await pool.query(GET_REQUEST, [id]);
  const r = rows[0];
  if (!r || (!viewer.admin && r.owner !== viewer.owner))
    throw problem('ERR_NOT_FOUND', 'no such erasure request');
  const taskOwner = r.linked_to ?? r.id;
  const [tasks, journal] = await Promise.all([
    pool.query(GET_TASKS, [taskOwner]),
    opts.journal === false
      ? { rows: [] }
      : pool.query(GET_JOURNAL, [[r.id, ...(r.linked_to ? [r.linked_to] : [])]]),
  ]);
  const open = !['completed', 'cancelled'].includes(r.status);
  const view: RequestView = {
    id: r.id,
    status: r.status,
    reason: r.reason,
    priority: r.priority,
    receivedAt: iso(r.received_at)!,
    notBefore: iso(r.not_before),
    deadline: iso(r.deadline)!,
    overdue: open && r.deadline.getTime() < Date.now(),
    completedAt: iso(r.completed_at),
    cancelledAt: iso(r.cancelled_at),
    linkedTo: r.linked_to,
    identifierTypes: r.identifier_types,
    tasks: tasks.rows.map((t) => ({
      target: t.target,
      kind: t.kind,
      state: t.state,
      outcome: t.outcome,
      attempts: t.attempts,
      nextAttemptAt: ['pending', 'retrying'].includes(t.state) ? iso(t.next_attempt_at) : null,
      lastError: t.last_error,
      dispatchedAt: iso(t.dispatched_at),
      ackedAt: iso(t.acked_at),
      evidence: t.evidence,
      paused: t.paused,
      late: t.late,
      deliveries: t.attempts,
    })),
    lateTargets: tasks.rows.filter((t) => t.late).map((t) => t.target),
    journal: journal.rows.map((j) => ({
      seq: j.chain_seq === null ? null : Number(j.chain_seq),
      kind: j.kind,
      at: iso(j.at)!,
      detail: j.detail,
    })),
    links: { self: `/v1/erasure-requests/${r.id}` },
  };
  return view;
}

export interface ListFilter {
  status?: string;
  reason?: string;
  target?: string;
  overdue?: boolean;
  limit: number;
  cursor?: string;
}

/**
 * A cursor is [received_at, id] of the last row shown. received_at travels at the column's
 * full precision (microseconds, as PostgreSQL formats it: `to_char(… 'US')`): rows written
 * by one statement (a batch, a group commit) share one received_at, and a cursor rounded to
 * milliseconds skipped every row tied with the last one shown. Cursors of earlier versions
 * (milliseconds) are still read.
 */
function isCursorInstant(v: unknown): v is string {
  if (typeof v !== 'string') return false;
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3})(\d{3})?Z$/.exec(v);
  // Year 0000 is a valid JS date but not a PostgreSQL timestamptz (22008 → a 500 before).
  return m !== null && !m[1]!.startsWith('0000') && new Date(`${m[1]}Z`).toISOString() === `${m[1]}Z`;
}

function encodeCursor(receivedAt: string, id: string): string {
  return Buffer.from(JSON.stringify([receivedAt, id])).toString('base64url');
}

function decodeCursor(cursor: string): [string, string] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 2 && isCursorInstant(v[0]) && isUuid(String(v[1]))) {
      return [v[0], String(v[1])];
    }
  } catch {
    /* fall through */
  }
  throw problem('ERR_INVALID_CURSOR', 'cursor is not one this API issued');
}

/** Newest first, keyset-paginated on (received_at, id): stable under concurrent inserts. */
export async function listRequests(pool: pg.Pool, viewer: { owner: string; admin: boolean }, f: ListFilter) {
  const where: string[] = [];
  const params: unknown[] = [];
  const add = (sql: string, v: unknown) => {
    params.push(v);
    where.push(sql.replace('?', `$${params.length}`));
  };
  if (!viewer.admin) add('r.owner = ?', viewer.owner);
  if (f.status) add(`${STATUS_SQL} = ?`, f.status);
  if (f.reason) add('r.reason = ?', f.reason);
  if (f.target)
    add('EXISTS (SELECT 1 FROM erasure_tasks t WHERE t.request_id = r.id AND t.target = ?)', f.target);
  if (f.overdue === true)
    where.push(`r.deadline < now() AND ${STATUS_SQL} NOT IN ('completed', 'cancelled')`);
  if (f.overdue === false)
    where.push(`NOT (r.deadline < now() AND ${STATUS_SQL} NOT IN ('completed', 'cancelled'))`);
  if (f.cursor) {
    const [at, id] = decodeCursor(f.cursor);
    params.push(at, id);
    where.push(`(r.received_at, r.id) < ($${params.length - 1}::timestamptz, $${params.length}::uuid)`);
  }
  params.push(f.limit + 1);
  const sql = `
    SELECT r.id, ${STATUS_SQL} AS status, r.reason, r.priority, r.received_at, r.deadline,
           to_char(r.received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS received_at_cursor,
           ${COMPLETED_AT_SQL} AS completed_at, r.linked_to
      FROM erasure_requests r
      LEFT JOIN erasure_requests p ON p.id = r.linked_to
     ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
     ORDER BY r.received_at DESC, r.id DESC
     LIMIT $${params.length}`;
  const { rows } = await pool.query(sql, params);
  const page = rows.slice(0, f.limit);
  const last = page.at(-1);
  return {
    items: page.map((r) => ({
      id: r.id,
      status: r.status,
      reason: r.reason,
      priority: r.priority,
      receivedAt: iso(r.received_at),
      deadline: iso(r.deadline),
      overdue: !['completed', 'cancelled'].includes(r.status) && r.deadline.getTime() < Date.now(),
      completedAt: iso(r.completed_at),
      linkedTo: r.linked_to,
      links: { self: `/v1/erasure-requests/${r.id}` },
    })),
    nextCursor: rows.length > f.limit && last ? encodeCursor(last.received_at_cursor, last.id) : null,
  };
}
