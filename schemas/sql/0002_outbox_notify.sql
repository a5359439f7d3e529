-- Wakes the outbox relay within milliseconds of a commit instead of at its next poll.
-- NOTIFY is transactional: it is delivered when the inserting transaction commits (never
-- for a rollback), so a woken relay always finds the rows committed.

-- STATEMENT level, not ROW level: a batch accept inserts up to 10,000 outbox rows in one
-- statement, and one wake-up is all the relay needs (it claims in batches). Postgres also
-- folds identical notifications within a transaction into one. The payload is empty on
-- purpose: the relay reads the table, and an id or key here could leak into logs.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('erasure_outbox', '');
  RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
  FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- The relay keeps one subject's events in id order: it will not claim a row while an
-- earlier pending row with the same key is waiting (grace period, backoff, another relay's
-- lease). This index answers that "earlier pending row for this key?" probe per candidate.
CREATE INDEX outbox_pending_key ON outbox (event_key, id) WHERE status = 'pending';
