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
 */
const RELEASE_FAILED_ROWS = `
UPDATE outbox o
   SET lease_owner = NULL,
       lease_until = NULL,
       last_error = f.error,
       available_at = now() + f.delay_ms * interval '1 millisecond'
  FROM unnest($1::bigint[], $2::text[], $3::integer[]) AS f(id, error, delay_ms)
 WHERE o.id = f.id
   AND o.lease_owner = $4`;

export async function releaseFailedRows(
  pool: pg.Pool,
  owner: string,
  failed: readonly FailedRow[],
): Promise<number> {
  if (failed.length === 0) return 0;
  const res = await pool.query({
    name: 'relay_release_failed_rows',
    text: RELEASE_FAILED_ROWS,
    values: [
      failed.map((f) => f.id),
      failed.map((f) => f.error.slice(0, 500)),
      failed.map((f) => f.delayMs),
      owner,
    ],
  });
  return res.rowCount ?? 0;
}
