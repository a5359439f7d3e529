-- Fewer indexes on erasure_tasks: every task is written at intake, again when dispatched and
-- again when acked, and each state change rewrites every index entry (state is indexed, so
-- no update is HOT). Two indexes no query needs any more go:
--   erasure_tasks_due (priority, next_attempt_at) WHERE pending/retrying: the sync dispatcher
--     claims per target through erasure_tasks_sync_due (0004); async tasks are never claimed
--     by due time (the relay publishes from the outbox, redelivery reads awaiting_ack).
--   erasure_tasks_target (target, state): per-request lookups use the primary key, and the
--     per-target scans of the sync dispatcher (due tasks, blocked dependents) use
--     erasure_tasks_sync_due, whose leading column is target.
-- Forward-only: a published migration is never edited; changes go in a new file.
DROP INDEX IF EXISTS erasure_tasks_due;
DROP INDEX IF EXISTS erasure_tasks_target;
