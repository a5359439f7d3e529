import type pg from 'pg';

/**
 * Only rows this relay still holds: if our lease expired and another relay claimed the
 * row, that relay publishes it again and marks it; we leave it alone. A crash before this
 * statement leaves the lease to expire and the rows are republished: at least once, never
 * lost. No status condition: a row published after its lease ran out may have been
 * cancelled meanwhile, and "sent" is then the truth about it.
 */
const MARK_SENT = `
UPDATE outbox
   SET status = 'sent', sent_at = now(), lease_owner = NULL, lease_until = NULL
 WHERE id = ANY ($1::bigint[])
   AND lease_owner = $2`;

/** Marks published rows sent. Returns how many were still ours. */
export async function markSent(pool: pg.Pool, owner: string, ids: readonly string[]): Promise<number> {
  if (ids.length === 0) return 0;
  const res = await pool.query({ name: 'relay_mark_sent', text: MARK_SENT, values: [ids, owner] });
  return res.rowCount ?? 0;
}
