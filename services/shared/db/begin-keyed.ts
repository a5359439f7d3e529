import type pg from 'pg';

/**
 * Opens a transaction whose statements reach their rows by key (batches of ids joined
 * from `unnest` arrays), with sequential scans priced out for that transaction only.
 *
 * Why: the planner's cost model (random_page_cost 4) and missing or stale statistics (a
 * table that grew by 100,000 rows since autovacuum last analysed it) make it hash-join a
 * few hundred keys against a sequential scan of the whole table. Measured in the pipeline
 * benchmark: completing 50 requests took 20 ms with the scan of erasure_tasks and 3.8 ms
 * with its primary key, and the cost of the scan grows with the table. `enable_seqscan =
 * off` does not forbid a scan; it only makes any index path win, and a statement without
 * one still runs. SET LOCAL ends with the transaction, so pooled connections are unchanged.
 * One round trip: both statements go in one simple-protocol message.
 */
export async function beginKeyed(client: pg.ClientBase): Promise<void> {
  await client.query('BEGIN; SET LOCAL enable_seqscan = off');
}
