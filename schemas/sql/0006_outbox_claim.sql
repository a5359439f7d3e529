-- Two changes for the relay's claim (services/relay/claim-outbox-batch.ts).
--
-- 1. Room on each outbox page. Every row is rewritten once before it is sent: the claim
--    sets lease_owner, lease_until and attempts, none of them indexed. With free space on
--    the row's own page that new version is a HOT update, so none of the four outbox
--    indexes gets a new entry (and none a dead one for later claims to step over). The
--    default fillfactor (100) packed intake's rows tight and every claim moved its rows to
--    other pages. Measured with 30,000 queued events claimed in batches of 500: 1.2 s of
--    claims with the default, 0.76 s with 40. Mark-sent changes status, which the pending
--    indexes' predicates read, so it is never HOT; 40 leaves room for the claim only.
--    Applies to pages written from now on; existing pages keep their layout.
ALTER TABLE outbox SET (fillfactor = 40);

-- 2. The claim's per-candidate probe ("an earlier pending row with this key?") must use
--    outbox_pending_key (event_key, id). Both pending indexes had the same predicate, so
--    the probe could also be planned on outbox_pending (available_at, id), reading every
--    pending row below the candidate's id, and Postgres did exactly that whenever its
--    statistics said almost nothing was pending (an ANALYZE taken between bursts): 180 ms
--    per claim of 500 with 30,000 rows queued instead of 10 ms, and growing with the
--    queue. `available_at IS NOT NULL` (always true: the column is NOT NULL) is implied by
--    the claim's own `available_at <= now()` but not by the probe's conditions, so only the
--    claim can use this index, whatever the statistics say.
DROP INDEX outbox_pending;
CREATE INDEX outbox_pending ON outbox (available_at, id) WHERE status = 'pending' AND available_at IS NOT NULL;
