import type pg from 'pg';

export interface FailedRow {
  readonly id: string;
  /** Why, for a person reading the row: codes and kinds only, never identifier values. */
  readonly error: string;
  /** How long before the row may be claimed again, in milliseconds. */
  readonly delayMs: number;
}

/**
 * A failed row stays pending (nothing is ever dropped) with its lease released and its
 * next try pushed back by `available_at`. A cancel still refuses it (attempts > 0): a
 * failed send may have reached the broker all the same. Rows whose
 * lease another relay has taken since are not ours to touch.
 *
 * Keeps the claim's invariant (claim-outbox-batch.ts): within one event_key, pending rows'
 * available_at never decreases as id increases. Each row's own jittered delay would break
 * it (a subject's later row due before its earlier one, held back by it, and enough of
 * those at the front of the claim's window stall every claim), so:
 * - every released row of one key waits the longest delay asked for any of them;
 * - the key's other pending rows after its first released one (not claimed this time, or
 *   held back in publish-batch.ts and released here too) are moved to at least that time.
 * The later rows of those keys are not leased by anyone: no claim takes a row while an
 * earlier row of its key is pending, and ours were.
 */
const RELEASE_FAILED_ROWS = `
WITH failed AS (
  SELECT f.id, f.error, o.event_key,
         max(f.delay_ms) OVER (PARTITION BY o.event_key) AS delay_ms
    FROM unnest($1::bigint[], $2::text[], $3::integer[]) AS f(id, error, delay_ms)
    JOIN outbox o ON o.id = f.id
   WHERE o.lease_owner = $4
),
released AS (
  UPDATE outbox o
     SET lease_owner = NULL,
         lease_until = NULL,
         last_error = f.error,
         available_at = now() + f.delay_ms * interval '1 millisecond'
    FROM failed f
   WHERE o.id = f.id
     AND o.lease_owner = $4
  RETURNING o.id, o.event_key, o.available_at
),
per_key AS (
  SELECT event_key, min(id) AS first_id, max(available_at) AS available_at
    FROM released
   GROUP BY event_key
),
pushed AS (
  UPDATE outbox o
     SET available_at = k.available_at
    FROM per_key k
   WHERE o.event_key = k.event_key
     AND o.status = 'pending'
     AND o.id > k.first_id
     AND o.available_at < k.available_at
     AND o.id NOT IN (SELECT id FROM released)
)
SELECT count(*)::int AS released FROM released`;

export async function releaseFailedRows(
  pool: pg.Pool,
  owner: string,
  failed: readonly FailedRow[],
): Promise<number> {
  if (failed.length === 0) return 0;
  const { rows } = await pool.query<{ released: number }>({
    name: 'relay_release_failed_rows',
    text: RELEASE_FAILED_ROWS,
    values: [
      failed.map((f) => f.id),
      failed.map((f) => f.error.slice(0, 500)),
      failed.map((f) => f.delayMs),
      owner,
    ],
  });
  return rows[0]?.released ?? 0;
}
