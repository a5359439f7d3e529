-- A request is linked only to one that has not been dispatched yet. Linking to a request
-- already in progress let the second request settle on acks its partners sent before it
-- arrived: data the subject gave a partner between that partner's deletion and the second
-- request stayed, and the second request was reported completed all the same. A request for
-- a subject whose erasure is already under way now fans out itself (partners may get the
-- subject's erasure twice, which deletes are built to take), and later ones link to it
-- while it is undispatched. The index keeps one undispatched request per owner and subject
-- (the arbiter of linking under concurrency), so it covers exactly the statuses that can be
-- linked to.
-- Forward-only: a published migration is never edited; changes go in a new file.
DROP INDEX IF EXISTS erasure_requests_one_in_flight_per_owner;
CREATE UNIQUE INDEX IF NOT EXISTS erasure_requests_one_undispatched_per_owner
  ON erasure_requests (owner, subject_hash)
  WHERE linked_to IS NULL AND status IN ('received', 'scheduled');
