/**
 * The relay's floor: PostgreSQL alone running the two statements every relayed event needs
 * under DESIGN.md's outbox rule ("claimed by a status column with FOR UPDATE SKIP LOCKED and
 * a lease"): the relay's own claim (claim-outbox-batch.ts) and its mark-sent update of the
 * outbox row (mark-sent.ts MARK_SENT), and nothing else: no Kafka publish, no Avro encoding,
 * no task dispatch, no journal. No relay built on that rule goes faster than this on the
 * same PostgreSQL.
 */
import type pg from 'pg';
import { claimOutboxBatch } from '../../services/relay/claim-outbox-batch.ts';
import { MARK_SENT } from '../../services/relay/mark-sent.ts';
import { TOPICS } from '../../services/shared/event-codec.ts';

export interface RelayFloorResult {
  rows: number;
  durationS: number;
}

/**
 * Queues `rows` pending copies of requested events already in the outbox (fresh ids, due
 * now), and vacuums and analyses the outbox so the claims plan as in a relay's steady state.
 */
export async function queueFloorRows(pool: pg.Pool, rows: number): Promise<void> {
  const { rowCount } = await pool.query(
    `INSERT INTO outbox (topic, event_key, payload, request_id, available_at)
     SELECT topic, event_key, payload, request_id, now() - interval '1 second'
       FROM outbox WHERE topic = $1 ORDER BY id LIMIT $2`,
    [TOPICS.requested, rows],
  );
  if (rowCount !== rows) throw new Error(`relay floor: ${rowCount} events to copy, wanted ${rows}`);
  await pool.query('VACUUM ANALYZE outbox');
}

/**
 * `connections` claimers claim and mark the due outbox rows in batches of `batchSize` until
 * none is left (they stay marked sent).
 */
export async function runRelayFloor(
  pool: pg.Pool,
  opts: { batchSize: number; connections: number },
): Promise<RelayFloorResult> {
  const t0 = performance.now();
  let rows = 0;
  const claimer = async (w: number) => {
    const owner = `relay-floor-${w}`;
    for (;;) {
      const claimed = await claimOutboxBatch(pool, { owner, batchSize: opts.batchSize, leaseMs: 60_000 });
      if (claimed.length === 0) return;
      await pool.query(MARK_SENT, [claimed.map((r) => r.id), owner, TOPICS.requested]);
      rows += claimed.length;
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, (_, w) => claimer(w)));
  return { rows, durationS: (performance.now() - t0) / 1000 };
}
