-- Sync dispatcher (services/sync-dispatcher): claims of sync_http tasks.
-- Forward-only: a published migration is never edited; changes go in a new file.

-- Which dispatcher replica holds a sync_http task it is calling. Set by the claim together
-- with state 'dispatched', and cleared when the call's outcome is recorded. While it is set,
-- next_attempt_at is the lease's end: if the replica dies mid-call the task is due again
-- then (with the same Idempotency-Key), so no extra timestamp column is needed. async_event
-- tasks never set it.
ALTER TABLE erasure_tasks ADD COLUMN lease_owner text;

-- The claim: per target, due tasks in priority order (legal, normal, bulk), then oldest due
-- first. Open tasks only, plus sync tasks under a lease (which may have expired), so the
-- index stays as small as the work waiting, not every task ever written.
CREATE INDEX erasure_tasks_sync_due ON erasure_tasks (target, priority, next_attempt_at)
  WHERE state IN ('pending', 'retrying') OR lease_owner IS NOT NULL;
