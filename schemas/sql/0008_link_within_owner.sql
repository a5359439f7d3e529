-- Linking stays within one owner. A second request for a subject with one in flight is
-- linked to it only when both belong to the same owner (the owner of the tokens that
-- submitted them). Across owners each request fans out itself: an owner never sees
-- another owner's request through a link (its id, its journal), never waits on it or
-- moves its notBefore and priority, and never blocks its cancel. A partner then may get
-- the subject's erasure twice, which deletes are built to take (a second delete finds
-- nothing: not_found).
-- Forward-only: a published migration is never edited; changes go in a new file.
DROP INDEX IF EXISTS erasure_requests_one_in_flight;
CREATE UNIQUE INDEX IF NOT EXISTS erasure_requests_one_in_flight_per_owner
  ON erasure_requests (owner, subject_hash)
  WHERE linked_to IS NULL AND status IN ('received', 'scheduled', 'in_progress');
