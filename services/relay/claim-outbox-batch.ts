import type pg from 'pg';

/** One outbox row as the relay works on it. Ids are bigint, so pg hands them over as text. */
export interface OutboxRow {
  readonly id: string;
  readonly topic: string;
  /** Hex HMAC of the subject: the Kafka key, so one subject's events share a partition. */
  readonly eventKey: string;
  readonly payload: Record<string, unknown>;
  /** Claims so far, this one included. */
  readonly attempts: number;
}

export interface ClaimOptions {
  /** This relay's lease owner name (RELAY_ID). */
  readonly owner: string;
  /** Most rows to claim. */
  readonly batchSize: number;
  /** How long the claim holds, in milliseconds; an expired lease is free for any relay. */
  readonly leaseMs: number;
}

/**
 * Claims are by status and lease, never by "id > last sent": bigserial values are handed
 * out before commit, so a row whose transaction commits late would sit below the mark and
 * be skipped forever.
 *
 * FOR UPDATE SKIP LOCKED: two relays claiming at once each take different rows instead of
 * queueing on each other's locks, and a cancel holding a row (FOR UPDATE NOWAIT) is simply
 * passed over. The row locks last only for this one statement (its own transaction); what
 * keeps the rows ours while we publish is the lease, which a crashed relay cannot release,
 * so it expires instead and another relay republishes (at least once; consumers dedupe on
 * eventId). A live lease is also what a cancel reads as "being published".
 *
 * The count keeps one subject's events in id order across relays: a candidate is taken
 * only if every earlier pending row with the same key is in this claim too, i.e. the
 * pending rows before it (an index-only count on outbox_pending_key, usually 0) are exactly
 * the claim's own earlier rows for that key (earlier_in_claim). Otherwise an earlier row is
 * waiting out a grace period or a backoff, leased by another relay, or locked by another
 * relay's claim right now, and the candidate stays pending, untouched, for a later claim.
 * Per candidate this is one index probe, so a claim costs the same with 100 or 1 000 000
 * pending rows (an anti-join against all pending rows made it grow with the backlog).
 *
 * Candidates come in outbox_pending's own order (available_at, id), so the scan stops after
 * `batchSize` rows. `ORDER BY id` made Postgres read every due pending row and sort them
 * for each claim: 10 ms of a 20 ms claim with 15,000 rows queued, growing with the queue.
 * Per-subject order does not depend on it: the count above holds a row back while an
 * earlier row of its subject is pending, whatever order the candidates came in.
 *
 * Progress does depend on the window: a held-back row takes a place in it. If a subject's
 * later row were due before its earlier one (each failed row backs off with its own jitter,
 * release-failed-rows.ts; a row written while an earlier row of its subject backs off: a new
 * request's event, a completed event, a redelivery), `batchSize` such rows at the front
 * would fill the window and every claim would return nothing, forever, with the earlier
 * rows due behind them. So the claim moves a held-back candidate whose earlier rows are due
 * later than it to their time (`deferred`): out of the window until they are due, and then
 * behind them. This one place covers every way the order can break.
 */
const CLAIM_OUTBOX_BATCH = `
WITH candidates AS (
  SELECT id, event_key
    FROM outbox
   WHERE status = 'pending'
     AND available_at <= now()
     AND (lease_until IS NULL OR lease_until < now())
   ORDER BY available_at, id
   LIMIT $2
     FOR UPDATE SKIP LOCKED
),
ranked AS (
  SELECT id, event_key, row_number() OVER (PARTITION BY event_key ORDER BY id) - 1 AS earlier_in_claim
    FROM candidates
),
checked AS (
  SELECT c.id, c.event_key,
         (SELECT count(*)
            FROM outbox e
           WHERE e.event_key = c.event_key
             AND e.status = 'pending'
             AND e.id < c.id) = c.earlier_in_claim AS free
    FROM ranked c
),
deferred AS (
  UPDATE outbox o
     SET available_at = w.available_at
    FROM checked c,
         LATERAL (SELECT max(e.available_at) AS available_at
                    FROM outbox e
                   WHERE e.event_key = c.event_key
                     AND e.status = 'pending'
                     AND e.id < c.id) w
   WHERE o.id = c.id
     AND NOT c.free
     AND w.available_at > o.available_at
)
UPDATE outbox o
   SET lease_owner = $1,
       lease_until = now() + $3 * interval '1 millisecond',
       attempts = o.attempts + 1
  FROM checked c
 WHERE o.id = c.id
   AND c.free
RETURNING o.id, o.topic, o.event_key, o.payload, o.attempts`;

interface Row {
  id: string;
  topic: string;
  event_key: string;
  payload: Record<string, unknown>;
  attempts: number;
}

/** Claims up to `batchSize` due rows for this relay, oldest first. */
export async function claimOutboxBatch(pool: pg.Pool, opts: ClaimOptions): Promise<OutboxRow[]> {
  const { rows } = await pool.query<Row>({
    name: 'relay_claim_outbox_batch',
    text: CLAIM_OUTBOX_BATCH,
    values: [opts.owner, opts.batchSize, opts.leaseMs],
  });
  // RETURNING has no order; publishing in id order keeps each subject's events in order.
  return rows
    .map((r) => ({
      id: r.id,
      topic: r.topic,
      eventKey: r.event_key,
      payload: r.payload,
      attempts: r.attempts,
    }))
    .sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? -1 : 1));
}
