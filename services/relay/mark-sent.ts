import type pg from 'pg';
import { TOPICS } from '../shared/event-codec.ts';
import { beginKeyed } from '../shared/db/begin-keyed.ts';

/**
 * Only rows this relay still holds: if our lease expired and another relay claimed the
 * row, that relay publishes it again and marks it; we leave it alone. A crash before this
 * statement leaves the lease to expire and the rows are republished: at least once, never
 * lost. No status condition: a row published after its lease ran out may have been
 * cancelled meanwhile, and "sent" is then the truth about it.
 *
 * Returns, per row, the targets an original requested event named (null for every other
 * row: completed events, redeliveries, and payloads without a targets array), so the
 * dispatch step below knows whose ack clock starts now, and whether the row is a
 * redelivery, whose task's next look is moved to count from now (RESCHEDULE_REDELIVERED).
 */
export const MARK_SENT = `
UPDATE outbox
   SET status = 'sent', sent_at = now(), lease_owner = NULL, lease_until = NULL
 WHERE id = ANY ($1::bigint[])
   AND lease_owner = $2
RETURNING id, request_id,
          CASE WHEN topic = $3 AND request_id IS NOT NULL AND NOT payload ? 'redelivery'
                    AND jsonb_typeof(payload->'targets') = 'array'
               THEN payload->'targets' END AS targets,
          topic = $3 AND request_id IS NOT NULL
            AND jsonb_typeof(payload->'redelivery') = 'object' AS redelivery`;

/**
 * Locking query: the requests whose event just went out, in id order, held to COMMIT.
 * Everything that touches a task and its request (apply-ack.ts, cancel-request.ts) locks the
 * request row first and the task second; DISPATCH_TASKS below locks tasks and then updates
 * requests, so without taking every request lock first a concurrent ack would hold its
 * request and wait for our task while we hold the task and wait for its request: deadlock.
 * Id order keeps two relays (or a replayed batch) from locking the same set in opposite orders.
 */
const LOCK_REQUESTS = `
SELECT id FROM erasure_requests WHERE id = ANY ($1::uuid[]) ORDER BY id FOR NO KEY UPDATE`;

/**
 * One statement for the whole batch: the event reached Kafka, so each async_event task it
 * named starts waiting for its ack (dispatched, dispatched_at = now(), one delivery counted),
 * the request leaves `scheduled`, and the journal says which targets were sent it.
 *
 * The `state = 'pending'` guard is what keeps this from undoing anything: a partner that
 * acked before we got here (it read the event before mark-sent ran), a cancelled task or
 * one a previous publication already dispatched all stay as they are. Under the request
 * locks above no ack can be committing for these requests meanwhile.
 */
const DISPATCH_TASKS = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::jsonb[]) AS i(request_id, targets)
),
dispatched AS (
  UPDATE erasure_tasks t
     SET state = 'dispatched', dispatched_at = now(), attempts = t.attempts + 1, updated_at = now()
    FROM input i
   WHERE t.request_id = i.request_id
     AND t.target IN (SELECT jsonb_array_elements_text(i.targets))
     AND t.state = 'pending'
  RETURNING t.request_id, t.target
),
started AS (
  -- received counts too (as in settleRequest): whatever came before dispatch is over now.
  UPDATE erasure_requests r
     SET status = 'in_progress'
   WHERE r.id IN (SELECT request_id FROM dispatched)
     AND r.status IN ('received', 'scheduled')
  RETURNING r.id
)
INSERT INTO journal (request_id, kind, actor, detail)
SELECT d.request_id, 'request.dispatched', $3,
       jsonb_build_object(
         'targets', jsonb_agg(d.target ORDER BY d.target),
         'requestStatus', CASE WHEN d.request_id IN (SELECT id FROM started) THEN 'in_progress' END)
  FROM dispatched d
 GROUP BY d.request_id`;

/**
 * A redelivery's task was given its next look (an SLA plus a backoff) when the redelivery
 * service wrote the row, in the same statement (write-redeliveries.ts), so the row's
 * created_at is when that wait began. It is meant to count from when the partner can read
 * the event: published late (the relay or Kafka down), the task would be due again at once,
 * and another redelivery would count toward the cap with the partner given no time. So the
 * same wait now counts from now, as a first delivery's does from dispatched_at.
 *
 * Only the task this row redelivered, and only while that is still its latest delivery
 * (`attempts` is the redelivery's attempt) and unanswered (`retrying`): an ack or a later
 * redelivery meanwhile is left as it is. Under the request locks taken above.
 */
const RESCHEDULE_REDELIVERED = `
UPDATE erasure_tasks t
   SET next_attempt_at = now() + (t.next_attempt_at - o.created_at)
  FROM outbox o
 WHERE o.id = ANY ($1::bigint[])
   AND t.request_id = o.request_id
   AND t.target = o.payload->'redelivery'->>'target'
   AND t.attempts = (o.payload->'redelivery'->>'attempt')::integer
   AND t.state = 'retrying'`;

/** Journal actor of the dispatch entries. */
export const RELAY_ACTOR = 'relay';

/**
 * Marks published rows sent and, in the same transaction, dispatches the tasks their
 * requested events named (see DISPATCH_TASKS). Returns how many rows were still ours.
 * Throws when the database fails; then nothing was marked and the leases expire.
 */
export async function markSent(pool: pg.Pool, owner: string, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    await beginKeyed(client);
    const sent = await client.query<{
      id: string;
      request_id: string | null;
      targets: string[] | null;
      redelivery: boolean;
    }>({
      name: 'relay_mark_sent',
      text: MARK_SENT,
      values: [ids, owner, TOPICS.requested],
    });
    const started = sent.rows.filter((r) => r.request_id !== null && r.targets && r.targets.length > 0);
    const redelivered = sent.rows.filter((r) => r.redelivery);
    if (started.length > 0 || redelivered.length > 0) {
      const locked = [...started, ...redelivered].map((r) => r.request_id as string);
      await client.query({ name: 'relay_lock_requests', text: LOCK_REQUESTS, values: [locked] });
    }
    if (started.length > 0) {
      await client.query({
        name: 'relay_dispatch_tasks',
        text: DISPATCH_TASKS,
        values: [
          started.map((r) => r.request_id as string),
          started.map((r) => JSON.stringify(r.targets)),
          RELAY_ACTOR,
        ],
      });
    }
    if (redelivered.length > 0) {
      await client.query({
        name: 'relay_reschedule_redelivered',
        text: RESCHEDULE_REDELIVERED,
        values: [redelivered.map((r) => r.id)],
      });
    }
    await client.query('COMMIT');
    return sent.rowCount ?? 0;
  } catch (err) {
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}
