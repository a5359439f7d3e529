import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import type { Identifier } from '../../shared/identifiers.ts';
import { retryWithBackoff, type RetryPolicy } from '../../shared/compute-backoff.ts';
import { PRIORITY_RANK, REASON_POLICY } from '../../shared/reasons.ts';
import { subjectHash } from '../../shared/subject-hash.ts';
import type { ErasureRequestInput } from './validate-request.ts';

export const REQUESTED_TOPIC = 'privacy.erasure.requested.v1';
export const COMPLETED_TOPIC = 'privacy.erasure.completed.v1';

export interface NewRequest extends ErasureRequestInput {
  idempotencyKey: string;
}

export type InsertOutcome =
  | {
      kind: 'created' | 'existing' | 'linked';
      id: string;
      status: string;
      deadline: Date;
      linkedTo: string | null;
    }
  | { kind: 'conflict'; id: string };

interface Row {
  id: string;
  idempotency_key: string;
  status: string;
  deadline: Date;
  linked_to: string | null;
}

/** A priority column's rank in SQL, as PRIORITY_RANK has it (lower goes first). */
function priorityRankSql(column: string): string {
  const cases = Object.entries(PRIORITY_RANK).map(([p, r]) => `WHEN '${p}' THEN ${r}`);
  return `(CASE ${column} ${cases.join(' ')} END)`;
}

/**
 * The accept transaction, for one request or ten thousand: requests, one task per target
 * registered for their identifier types (the plan), a journal entry each, and an outbox
 * row each for the erasure event — one statement, so all of it commits or none does, in
 * one round trip. Rows that hit a unique index (same idempotency key, or a subject that
 * already has an undispatched request) are left out here and resolved by the caller.
 */
const INSERT_ACCEPTED = `
WITH input AS (
  SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[], $5::jsonb[], $6::text[], $7::text[],
                $8::text[], $9::smallint[], $10::timestamptz[], $11::interval[], $12::uuid[],
                $15::timestamptz[])
         WITH ORDINALITY
      AS i(id, idempotency_key, body_sha256, subject_hash, identifiers, identifier_types, reason,
           priority, priority_rank, not_before, deadline_after, event_id, deadline_from, ord)
),
plan AS (
  SELECT i.id, t.name AS target, t.kind
    FROM input i
    JOIN targets t ON t.identifier_types && string_to_array(i.identifier_types, ',')
),
-- One row per request (joined by hash, not a correlated subquery per row: batches are 10k).
planned AS (
  SELECT i.*,
         coalesce(p.targets, '[]') AS targets,
         coalesce(p.async_targets, '[]') AS async_targets,
         p.id IS NOT NULL AS has_targets
    FROM input i
    LEFT JOIN (SELECT id,
                      jsonb_agg(target ORDER BY target) AS targets,
                      coalesce(jsonb_agg(target ORDER BY target) FILTER (WHERE kind = 'async_event'), '[]') AS async_targets
                 FROM plan GROUP BY id) p ON p.id = i.id
),
req AS (
  INSERT INTO erasure_requests (id, owner, idempotency_key, body_sha256, subject_hash, identifiers, reason,
                                priority, status, not_before, deadline, completed_at)
  SELECT id, $13, idempotency_key, body_sha256, subject_hash, identifiers, reason, priority,
         CASE WHEN has_targets THEN 'scheduled' ELSE 'completed' END,
         not_before,
         greatest(now(), deadline_from) + deadline_after,
         CASE WHEN has_targets THEN NULL ELSE now() END
    FROM planned
   -- By subject, then input order: of two items of one batch with the same subject the
   -- first is inserted and the later one resolved against it (the hash join above reorders
   -- rows; a later item with an earlier item's key is not in this input, see
   -- insertRequests). Concurrent batches for the same subjects then take the subject
   -- index's entries in one order and wait on each other instead of deadlocking.
   ORDER BY subject_hash, ord
  ON CONFLICT DO NOTHING
  RETURNING id, idempotency_key, status, received_at, deadline, linked_to
),
tasks AS (
  INSERT INTO erasure_tasks (request_id, target, priority, next_attempt_at)
  SELECT p.id, p.target, i.priority_rank, coalesce(i.not_before, now())
    FROM plan p
    JOIN req r ON r.id = p.id
    JOIN input i ON i.id = p.id
),
journal_rows AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT r.id, 'request.accepted', $14,
         jsonb_build_object(
           'reason', p.reason, 'priority', p.priority,
           'identifierTypes', to_jsonb(string_to_array(p.identifier_types, ',')),
           'notBefore', p.not_before, 'targets', p.targets)
    FROM req r JOIN planned p ON p.id = r.id
),
requested_events AS (
  INSERT INTO outbox (topic, event_key, payload, request_id, available_at)
  SELECT '${REQUESTED_TOPIC}', encode(p.subject_hash, 'hex'),
         jsonb_build_object(
           'eventId', p.event_id, 'requestId', r.id, 'identifiers', p.identifiers, 'reason', p.reason,
           'requestedAt', r.received_at, 'priority', p.priority, 'notBefore', p.not_before,
           'deadline', r.deadline, 'targets', p.async_targets),
         r.id, coalesce(p.not_before, now())
    FROM req r JOIN planned p ON p.id = r.id
  RETURNING request_id, event_key, available_at
),
completed_events AS (
  -- No registered target holds these identifier types: complete at once, and say so. Fed
  -- from requested_events' output so the completed event's outbox id comes after the
  -- requested event's: the relay publishes one subject's events in id order. Due when the
  -- requested event is (notBefore): due earlier, it would be held back behind it, and a
  -- claim's window full of held-back rows publishes nothing at all.
  INSERT INTO outbox (topic, event_key, payload, request_id, available_at)
  SELECT '${COMPLETED_TOPIC}', e.event_key,
         jsonb_build_object('requestId', r.id, 'completedAt', now(), 'status', 'completed', 'outcomes', '[]'::jsonb),
         r.id, e.available_at
    FROM requested_events e JOIN req r ON r.id = e.request_id
   WHERE r.status = 'completed'
)
SELECT id, idempotency_key, status, deadline, linked_to FROM req`;

/**
 * Links requests whose subject already has one of the same owner not yet dispatched to
 * that request: no second fan-out, a journal entry saying so. Never to one in progress:
 * its partners may have deleted and acked already, and the new request must not settle on
 * deletions done before it arrived (0011_link_only_undispatched.sql); it fans out itself. Conflicts again (a concurrent
 * duplicate) are left out. Only within one owner (0008_link_within_owner.sql): across
 * owners each request fans out itself, so an owner never sees, waits on, escalates or
 * blocks another owner's request.
 *
 * The primary is locked FOR NO KEY UPDATE (in id order, so two linkers and the relay's
 * id-ordered request locks never wait on each other in a cycle; not FOR SHARE, which two
 * linkers both hold and then both upgrade for the escalation's UPDATE: a deadlock): a cancel of the primary that is
 * committing meanwhile is waited for, the row is then re-read, and a primary that is no
 * longer undispatched is not linked to (the request is accepted with its own fan-out in the
 * next round). Without the lock a link could land on a request cancelled under it, and
 * that subject would never be erased.
 *
 * A linked request never waits longer than it would alone: when it is due earlier
 * (notBefore, or none) or ranks higher than its primary, the primary is brought forward
 * (its notBefore and priority, its pending tasks, its requested event while still
 * unpublished, payload included, so partners see the new values) and the primary's journal
 * says why (`request.escalated`). Otherwise a GDPR request linked to a retention expiry 80
 * days out would wait 80 days, past its legal deadline.
 */
const INSERT_LINKED = `
WITH input AS (
  SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::bytea[], $5::jsonb[], $6::text[], $7::text[],
                $8::timestamptz[], $9::interval[], $12::smallint[], $13::timestamptz[])
      AS i(id, idempotency_key, body_sha256, subject_hash, identifiers, reason, priority, not_before,
           deadline_after, priority_rank, deadline_from)
),
in_flight AS (
  SELECT DISTINCT ON (subject_hash) id, subject_hash
    FROM (SELECT id, subject_hash
            FROM erasure_requests
           WHERE subject_hash = ANY ($4::bytea[])
             AND owner = $10
             AND linked_to IS NULL
             AND status IN ('received', 'scheduled')
           ORDER BY id
             FOR NO KEY UPDATE) locked
   ORDER BY subject_hash, id
),
req AS (
  INSERT INTO erasure_requests (id, owner, idempotency_key, body_sha256, subject_hash, identifiers, reason,
                                priority, status, not_before, deadline, linked_to)
  SELECT i.id, $10, i.idempotency_key, i.body_sha256, i.subject_hash, i.identifiers, i.reason, i.priority,
         'scheduled', i.not_before, greatest(now(), i.deadline_from) + i.deadline_after, f.id
    FROM input i JOIN in_flight f ON f.subject_hash = i.subject_hash
  ON CONFLICT DO NOTHING
  RETURNING id, idempotency_key, status, deadline, linked_to
),
journal_rows AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT r.id, 'request.linked', $11, jsonb_build_object('linkedTo', r.linked_to)
    FROM req r
),
-- Per primary: the earliest due time and the highest rank among the requests linked now.
wanted AS (
  SELECT r.linked_to AS id,
         min(coalesce(i.not_before, now())) AS due,
         min(i.priority_rank) AS priority_rank,
         (array_agg(i.priority ORDER BY i.priority_rank))[1] AS priority,
         (array_agg(r.id ORDER BY coalesce(i.not_before, now()), i.priority_rank))[1] AS by_request
    FROM req r JOIN input i ON i.id = r.id
   GROUP BY r.linked_to
),
escalated AS (
  UPDATE erasure_requests p
     SET not_before = CASE WHEN p.not_before > w.due THEN
                        CASE WHEN w.due > now() THEN w.due END
                      ELSE p.not_before END,
         priority = CASE WHEN w.priority_rank < ${priorityRankSql('p.priority')} THEN w.priority ELSE p.priority END
    FROM wanted w
   WHERE p.id = w.id
     AND (p.not_before > w.due OR w.priority_rank < ${priorityRankSql('p.priority')})
  RETURNING p.id, p.not_before, p.priority, w.due, w.priority_rank, w.by_request
),
escalated_tasks AS (
  UPDATE erasure_tasks t
     SET next_attempt_at = least(t.next_attempt_at, e.due),
         priority = least(t.priority, e.priority_rank),
         updated_at = now()
    FROM escalated e
   WHERE t.request_id = e.id
     AND t.state = 'pending'
),
escalated_events AS (
  UPDATE outbox o
     SET available_at = least(o.available_at, e.due),
         payload = o.payload || jsonb_build_object('notBefore', e.not_before, 'priority', e.priority)
    FROM escalated e
   WHERE o.request_id = e.id
     AND o.topic = '${REQUESTED_TOPIC}'
     AND o.status = 'pending'
     AND o.attempts = 0
),
escalation_journal AS (
  INSERT INTO journal (request_id, kind, actor, detail)
  SELECT e.id, 'request.escalated', $11,
         jsonb_build_object('byRequest', e.by_request, 'notBefore', e.not_before, 'priority', e.priority)
    FROM escalated e
)
SELECT id, idempotency_key, status, deadline, linked_to FROM req`;

const FIND_BY_KEYS = `
SELECT id, idempotency_key, body_sha256, status, deadline, linked_to
  FROM erasure_requests
 WHERE owner = $1 AND idempotency_key = ANY ($2::text[])`;

/**
 * Statements that PostgreSQL aborted as a deadlock victim (40P01) or serialization failure
 * (40001) wrote nothing and are run again. Two batches for overlapping subjects or keys in
 * different orders can deadlock on the unique indexes, and two linkers on one primary can
 * in rarer patterns; a client must not get a 5xx for that. Past
 * the last attempt the error reaches the problem handler, which answers 503 with
 * Retry-After: items of earlier rounds are committed, and the same keys find them again.
 */
const CONFLICT_RETRY: RetryPolicy = {
  attempts: 6,
  initialMs: 50,
  maxMs: 1000,
  multiplier: 2,
};

const isConflict = (err: unknown) => ['40P01', '40001'].includes((err as { code?: string }).code ?? '');

async function queryRetryingConflicts<R extends pg.QueryResultRow>(
  pool: pg.Pool,
  query: pg.QueryConfig,
): Promise<pg.QueryResult<R>> {
  const run = await retryWithBackoff(() => pool.query<R>(query), CONFLICT_RETRY, {
    sleep,
    random: Math.random,
    retriable: isConflict,
  });
  if (!run.ok) throw run.error;
  return run.value!;
}

/**
 * What the deadline counts from besides receipt (PostgreSQL takes the later of the two):
 * the end of the grace period for a house policy, nothing for a legal deadline.
 */
function deadlineFrom(r: NewRequest): Date | null {
  return REASON_POLICY[r.reason].deadlineFrom === 'notBefore' ? r.notBefore : null;
}

function identifierTypesCsv(ids: readonly Identifier[]): string {
  return [...new Set(ids.map((i) => i.type))].sort().join(',');
}

/**
 * Accepts requests for one owner. Returns an outcome per input, in input order. Rows are
 * durable when this resolves (each statement commits on its own; every statement is
 * all-or-nothing for the rows it writes, so no partial request is ever visible).
 */
export async function insertRequests(
  pool: pg.Pool,
  input: { owner: string; actor: string; hmacKey: Buffer; requests: readonly NewRequest[] },
): Promise<InsertOutcome[]> {
  const n = input.requests.length;
  const outcomes: (InsertOutcome | undefined)[] = new Array(n);
  const ids = input.requests.map(() => randomUUID());
  const subjects = input.requests.map((r) => subjectHash(input.hmacKey, r.identifiers));
  let pending = [...Array(n).keys()];

  // A request can lose a race three ways (key taken, subject taken, primary dispatched or finished in
  // between); each round settles at least one of them, so a few rounds always suffice.
  for (let round = 0; round < 5 && pending.length > 0; round++) {
    // 1. Accept what does not conflict.
    // An item whose key an earlier pending item has waits for step 2 (it is that item's
    // retry, or a 409): the statement below orders rows by subject, not input order.
    const seenKeys = new Set<string>();
    const firsts = pending.filter((i) => {
      const key = input.requests[i]!.idempotencyKey;
      if (seenKeys.has(key)) return false;
      seenKeys.add(key);
      return true;
    });
    const pick = <T>(f: (i: number) => T) => firsts.map(f);
    // Named: parsed and analysed once per connection, not on every accept.
    const accepted = await queryRetryingConflicts<Row>(pool, {
      name: 'insert_accepted',
      text: INSERT_ACCEPTED,
      values: [
        pick((i) => ids[i]),
        pick((i) => input.requests[i]!.idempotencyKey),
        pick((i) => input.requests[i]!.bodySha256),
        pick((i) => subjects[i]),
        pick((i) => JSON.stringify(input.requests[i]!.identifiers)),
        pick((i) => identifierTypesCsv(input.requests[i]!.identifiers)),
        pick((i) => input.requests[i]!.reason),
        pick((i) => input.requests[i]!.priority),
        pick((i) => PRIORITY_RANK[input.requests[i]!.priority]),
        pick((i) => input.requests[i]!.notBefore),
        pick((i) => REASON_POLICY[input.requests[i]!.reason].deadline),
        pick(() => randomUUID()),
        input.owner,
        input.actor,
        pick((i) => deadlineFrom(input.requests[i]!)),
      ],
    });
    const byId = new Map(accepted.rows.map((r) => [r.id, r]));
    pending = pending.filter((i) => {
      const row = byId.get(ids[i]!);
      if (!row) return true;
      outcomes[i] = {
        kind: 'created',
        id: row.id,
        status: row.status,
        deadline: row.deadline,
        linkedTo: null,
      };
      return false;
    });
    if (pending.length === 0) break;

    // 2. Same idempotency key: the original request, or a conflict if the body differs.
    const existing = await pool.query<Row & { body_sha256: Buffer }>({
      name: 'find_requests_by_keys',
      text: FIND_BY_KEYS,
      values: [input.owner, pending.map((i) => input.requests[i]!.idempotencyKey)],
    });
    const byKey = new Map(existing.rows.map((r) => [r.idempotency_key, r]));
    pending = pending.filter((i) => {
      const req = input.requests[i]!;
      const row = byKey.get(req.idempotencyKey);
      if (!row) return true;
      outcomes[i] = row.body_sha256.equals(req.bodySha256)
        ? {
            kind: 'existing',
            id: row.id,
            status: row.status,
            deadline: row.deadline,
            linkedTo: row.linked_to,
          }
        : { kind: 'conflict', id: row.id };
      return false;
    });
    if (pending.length === 0) break;

    // 3. Subject already has an undispatched request: link instead of fanning out twice.
    const linked = await queryRetryingConflicts<Row>(pool, {
      name: 'insert_linked',
      text: INSERT_LINKED,
      values: [
        pending.map((i) => ids[i]),
        pending.map((i) => input.requests[i]!.idempotencyKey),
        pending.map((i) => input.requests[i]!.bodySha256),
        pending.map((i) => subjects[i]),
        pending.map((i) => JSON.stringify(input.requests[i]!.identifiers)),
        pending.map((i) => input.requests[i]!.reason),
        pending.map((i) => input.requests[i]!.priority),
        pending.map((i) => input.requests[i]!.notBefore),
        pending.map((i) => REASON_POLICY[input.requests[i]!.reason].deadline),
        input.owner,
        input.actor,
        pending.map((i) => PRIORITY_RANK[input.requests[i]!.priority]),
        pending.map((i) => deadlineFrom(input.requests[i]!)),
      ],
    });
    const linkedById = new Map(linked.rows.map((r) => [r.id, r]));
    pending = pending.filter((i) => {
      const row = linkedById.get(ids[i]!);
      if (!row) return true;
      outcomes[i] = {
        kind: 'linked',
        id: row.id,
        status: row.status,
        deadline: row.deadline,
        linkedTo: row.linked_to,
      };
      return false;
    });
  }
  if (pending.length > 0) throw new Error(`could not settle ${pending.length} request(s) after 5 rounds`);
  return outcomes as InsertOutcome[];
}
