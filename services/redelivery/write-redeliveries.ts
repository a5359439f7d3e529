import type pg from 'pg';

export interface Redelivery {
  readonly requestId: string;
  readonly target: string;
  /** Outbox id of the original requested event, whose payload is copied. */
  readonly originalId: string;
  /** Fresh eventId: consumers dedupe on it, so a redelivery must not reuse the original's. */
  readonly eventId: string;
  /** Milliseconds from now until the task is due again (planRedelivery's nextInMs). */
  readonly nextInMs: number;
}

/**
 * One statement for the batch: each task moves to `retrying` with one more delivery counted
 * and its next look scheduled; the original requested event's payload is copied into a new
 * outbox row with a fresh eventId and `redelivery: {attempt, target}` (every other partner
 * skips it); the journal records it. The attempt number is the task's attempts after the
 * update, so the event, the task and the journal cannot disagree.
 *
 * The state guard repeats what the claim's lock already ensures (see claim-late-tasks.ts),
 * so this statement can never turn an acked, failed or cancelled task back into retrying.
 * The event key is the original's (the subject HMAC): the redelivery lands on the same
 * partition, after the original.
 */
const WRITE_REDELIVERIES = `
WITH input AS (
  SELECT *
    FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::uuid[], $5::bigint[])
      AS i(request_id, target, original_id, event_id, next_in_ms)
),
moved AS (
  UPDATE erasure_tasks t
     SET state = 'retrying',
         attempts = t.attempts + 1,
         next_attempt_at = now() + i.next_in_ms * interval '1 millisecond',
         updated_at = now()
    FROM input i
   WHERE t.request_id = i.request_id
     AND t.target = i.target
     AND t.state IN ('dispatched', 'retrying')
  RETURNING t.request_id, t.target, t.attempts, i.original_id, i.event_id
),
events AS (
  INSERT INTO outbox (topic, event_key, payload, request_id)
  SELECT o.topic, o.event_key,
         o.payload || jsonb_build_object(
           'eventId', m.event_id,
           'redelivery', jsonb_build_object('attempt', m.attempts, 'target', m.target)),
         m.request_id
    FROM moved m
    JOIN outbox o ON o.id = m.original_id
)
INSERT INTO journal (request_id, kind, actor, detail)
SELECT m.request_id, 'task.redelivered', $6, jsonb_build_object('target', m.target, 'attempt', m.attempts)
  FROM moved m
RETURNING request_id`;

/** Writes the redeliveries inside the caller's transaction. Returns how many were written. */
export async function writeRedeliveries(
  client: pg.ClientBase,
  items: readonly Redelivery[],
  actor: string,
): Promise<number> {
  if (items.length === 0) return 0;
  const res = await client.query({
    name: 'redelivery_write',
    text: WRITE_REDELIVERIES,
    values: [
      items.map((i) => i.requestId),
      items.map((i) => i.target),
      items.map((i) => i.originalId),
      items.map((i) => i.eventId),
      items.map((i) => i.nextInMs),
      actor,
    ],
  });
  return res.rowCount ?? 0;
}
