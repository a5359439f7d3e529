import type pg from 'pg';
import { TOPICS } from '../shared/event-codec.ts';

/** A task whose target has not acknowledged within its SLA, locked by this transaction. */
export interface LateTask {
  readonly requestId: string;
  readonly target: string;
  /** Deliveries so far (the first publication counts as 1). */
  readonly deliveries: number;
  readonly ackSlaSeconds: number;
  /** Outbox id of the request's original requested event, or null when it is gone. */
  readonly originalId: string | null;
}

/**
 * Due: a `dispatched` task whose first SLA ran out (dispatched_at + ack_sla_seconds: read
 * from the target now, so an SLA changed by PATCH applies to tasks already waiting), or a
 * `retrying` task whose next look (set at its last redelivery) has come. Only async_event
 * targets: a sync_http task's retries belong to the sync dispatcher. A paused target is
 * held: pausing is how an operator stops traffic to a partner, redeliveries included.
 *
 * A task whose previous redelivery is still pending in the outbox is not due: the relay has
 * not published it yet (Kafka down, relay stopped), and counting another delivery would
 * fail the partner for our own outage.
 *
 * Locking query: FOR UPDATE OF t SKIP LOCKED, so replicas claim disjoint tasks instead of
 * queueing, and a task an ack is settling right now (apply-ack.ts holds it FOR UPDATE) is
 * passed over; its state is read again under our lock, so an ack that commits first is
 * never undone. The locks are held to the end of this transaction, through the writes.
 * The targets row is not locked (OF t): pausing a target must not wait for us.
 */
const CLAIM_LATE_TASKS = `
SELECT t.request_id, t.target, t.attempts, g.ack_sla_seconds, orig.id AS original_id
  FROM erasure_tasks t
  JOIN targets g ON g.name = t.target
  LEFT JOIN LATERAL (
        SELECT o.id
          FROM outbox o
         WHERE o.request_id = t.request_id
           AND o.topic = $2
           AND NOT o.payload ? 'redelivery'
         ORDER BY o.id
         LIMIT 1) orig ON true
 WHERE t.state IN ('dispatched', 'retrying')
   AND g.kind = 'async_event'
   AND NOT g.paused
   AND CASE WHEN t.state = 'dispatched'
            THEN t.dispatched_at + g.ack_sla_seconds * interval '1 second' <= now()
            ELSE t.next_attempt_at <= now() END
   AND NOT EXISTS (
         SELECT 1
           FROM outbox p
          WHERE p.request_id = t.request_id
            AND p.topic = $2
            AND p.status = 'pending')
 ORDER BY t.priority, t.dispatched_at, t.request_id, t.target
 LIMIT $1
   FOR UPDATE OF t SKIP LOCKED`;

interface Row {
  request_id: string;
  target: string;
  attempts: number;
  ack_sla_seconds: number;
  original_id: string | null;
}

/** Claims up to `limit` late tasks, most urgent priority first. Call inside a transaction. */
export async function claimLateTasks(client: pg.ClientBase, limit: number): Promise<LateTask[]> {
  const { rows } = await client.query<Row>({
    name: 'redelivery_claim_late_tasks',
    text: CLAIM_LATE_TASKS,
    values: [limit, TOPICS.requested],
  });
  return rows.map((r) => ({
    requestId: r.request_id,
    target: r.target,
    deliveries: r.attempts,
    ackSlaSeconds: r.ack_sla_seconds,
    originalId: r.original_id,
  }));
}
