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
 * The NOT EXISTS keeps one subject's events in id order across relays: a row is not taken
 * while an earlier pending row with the same key is not in this claim (waiting out a grace
 * period or a backoff, leased by another relay, or locked by another relay's claim right
 * now). Blocked candidates stay pending, untouched, for a later claim.
 */
const CLAIM_OUTBOX_BATCH = `
WITH candidates AS (
  SELECT id, event_key
    FROM outbox
   WHERE status = 'pending'
     AND available_at <= now()
     AND (lease_until IS NULL OR lease_until < now())
   ORDER BY id
   LIMIT $2
     FOR UPDATE SKIP LOCKED
)
UPDATE outbox o
   SET lease_owner = $1,
       lease_until = now() + $3 * interval '1 millisecond',
       attempts = o.attempts + 1
  FROM candidates c
 WHERE o.id = c.id
   AND NOT EXISTS (
         SELECT 1
           FROM outbox e
          WHERE e.event_key = c.event_key
            AND e.status = 'pending'
            AND e.id < c.id
            AND e.id NOT IN (SELECT id FROM candidates))
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
