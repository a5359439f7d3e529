import type pg from 'pg';

/**
 * Published erasure events of a time window, from the outbox (request store), in pages.
 * The outbox keeps each published event's payload with its eventId, and `sent_at` is when
 * the relay marked it published (just after Kafka acknowledged it). Keyset on id: the
 * primary key's index serves the ORDER BY, the window filters rows.
 */
const SELECT_PUBLISHED = `
  SELECT id, payload, sent_at
    FROM outbox
   WHERE topic = $1
     AND status = 'sent'
     AND sent_at >= $2
     AND sent_at < $3
     AND id > $4
   ORDER BY id
   LIMIT $5`;

export interface PublishedEventRow {
  id: string;
  payload: Record<string, unknown>;
  sent_at: Date;
}

export async function selectPublishedEvents(
  db: pg.Pool,
  topic: string,
  fromMs: number,
  toMs: number,
  afterId: string,
  limit: number,
): Promise<PublishedEventRow[]> {
  const res = await db.query<PublishedEventRow>(SELECT_PUBLISHED, [
    topic,
    new Date(fromMs),
    new Date(toMs),
    afterId,
    limit,
  ]);
  return res.rows;
}
