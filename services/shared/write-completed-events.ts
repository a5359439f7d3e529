/**
 * Writes the `privacy.erasure.completed.v1` event of requests that just reached a final
 * status, to the outbox, in the caller's transaction (settleRequests in apply-ack.ts for
 * completed and needs_attention, cancel-request.ts for cancelled). Its payload is built
 * here, with one exception: a request no target holds its identifier types for completes
 * when accepted, and its event (no outcomes) is built by the completed_events CTE of
 * INSERT_ACCEPTED in api/intake/insert-requests.ts, within that one accept statement and
 * after the requested event it writes (the relay publishes a subject's events in outbox id
 * order). Every request gets its own event: a request linked to another one for the same
 * subject (never fanned out again) included.
 */
import type pg from 'pg';
import { TOPICS } from './event-codec.ts';

export interface FinishedRequest {
  /** The request, already in its final status in this transaction. */
  readonly id: string;
  /**
   * Whose tasks are its outcomes: its own id, its primary's for a linked request (the
   * primary's tasks did its erasure), or null for none (a linked request withdrawn before
   * anything was sent).
   */
  readonly tasksOf: string | null;
}

/**
 * One statement for all of them. The payload is read from the rows as this transaction left
 * them: the status set by the caller, and completedAt the time the request completed or was
 * cancelled. Keyed by the subject HMAC like every other event of the subject, so the relay
 * publishes it after the subject's earlier events.
 */
const WRITE_COMPLETED_EVENTS = `
WITH input AS (
  SELECT * FROM unnest($1::uuid[], $2::uuid[]) WITH ORDINALITY AS i(id, tasks_of, ord)
),
outcomes AS (
  SELECT request_id,
         jsonb_agg(jsonb_build_object(
           'target', target, 'state', state, 'outcome', outcome, 'ackedAt', acked_at, 'attempts', attempts)
           ORDER BY target) AS list
    FROM erasure_tasks
   WHERE request_id IN (SELECT tasks_of FROM input)
   GROUP BY request_id
)
INSERT INTO outbox (topic, event_key, payload, request_id)
SELECT $3, encode(r.subject_hash, 'hex'),
       jsonb_build_object(
         'requestId', r.id,
         'completedAt', CASE WHEN r.status = 'cancelled' THEN r.cancelled_at ELSE r.completed_at END,
         'status', r.status,
         'outcomes', coalesce(o.list, '[]'::jsonb)),
       r.id
  FROM input i
  JOIN erasure_requests r ON r.id = i.id
  LEFT JOIN outcomes o ON o.request_id = i.tasks_of
 ORDER BY i.ord`;

/** Writes one completed event per request given, in the order given. */
export async function writeCompletedEvents(
  client: pg.ClientBase,
  finished: readonly FinishedRequest[],
): Promise<void> {
  if (finished.length === 0) return;
  await client.query({
    name: 'write_completed_events',
    text: WRITE_COMPLETED_EVENTS,
    values: [finished.map((f) => f.id), finished.map((f) => f.tasksOf), TOPICS.completed],
  });
}
