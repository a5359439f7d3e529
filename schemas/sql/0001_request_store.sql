-- Request store: erasure requests, their per-target tasks, the target and identifier-type
-- registries, API tokens, the hash-chained journal and the transactional outbox.
-- Forward-only: a published migration is never edited; changes go in a new file.

-- Identifier types a request may name. Built-ins are validated and normalised in code
-- (services/shared/identifiers); custom types carry an anchored regular expression.
CREATE TABLE identifier_types (
  name        text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_]{1,39}$'),
  builtin     boolean NOT NULL DEFAULT false,
  pattern     text,
  max_length  integer NOT NULL DEFAULT 256 CHECK (max_length BETWEEN 1 AND 1024),
  lowercase   boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now()
);
INSERT INTO identifier_types (name, builtin) VALUES
  ('user_id', true), ('email', true), ('phone', true), ('device_id', true);

-- Bearer tokens, stored as SHA-256 of the token (tokens are 256-bit random, so a plain
-- hash cannot be reversed by a dictionary). `owner` scopes what a token can see.
CREATE TABLE api_tokens (
  id            uuid PRIMARY KEY,
  token_sha256  bytea NOT NULL UNIQUE,
  owner         text NOT NULL,
  scopes        text[] NOT NULL,
  target        text,
  description   text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  expires_at    timestamptz,
  revoked_at    timestamptz,
  CHECK (scopes <@ ARRAY['submit', 'read', 'ack', 'admin']::text[]),
  CHECK (('ack' = ANY (scopes)) = (target IS NOT NULL))
);

-- Places that hold subject data.
CREATE TABLE targets (
  name                 text PRIMARY KEY CHECK (name ~ '^[a-z][a-z0-9_.-]{1,62}$'),
  kind                 text NOT NULL CHECK (kind IN ('sync_http', 'async_event')),
  identifier_types     text[] NOT NULL CHECK (cardinality(identifier_types) > 0),
  ack_sla_seconds      integer NOT NULL CHECK (ack_sla_seconds > 0),
  after_targets        text[] NOT NULL DEFAULT '{}',
  http                 jsonb,
  verify_url_template  text,
  paused               boolean NOT NULL DEFAULT false,
  owner                text,
  created_at           timestamptz NOT NULL DEFAULT now(),
  updated_at           timestamptz NOT NULL DEFAULT now(),
  CHECK ((kind = 'sync_http') = (http IS NOT NULL))
);
CREATE INDEX targets_identifier_types ON targets USING gin (identifier_types);

CREATE TABLE erasure_requests (
  id               uuid PRIMARY KEY,
  owner            text NOT NULL,
  idempotency_key  text NOT NULL,
  body_sha256      bytea NOT NULL,
  -- Keyed hash (HMAC) of the canonical identifier set: links a second request for the
  -- same subject to the one in flight without comparing plain values.
  subject_hash     bytea NOT NULL,
  identifiers      jsonb NOT NULL,
  reason           text NOT NULL CHECK (reason IN ('gdpr_art17', 'ccpa', 'account_deletion', 'tester_cleanup', 'retention_expiry')),
  priority         text NOT NULL CHECK (priority IN ('legal', 'normal', 'bulk')),
  status           text NOT NULL CHECK (status IN ('received', 'scheduled', 'in_progress', 'completed', 'needs_attention', 'cancelled')),
  received_at      timestamptz NOT NULL DEFAULT now(),
  not_before       timestamptz,
  deadline         timestamptz NOT NULL,
  completed_at     timestamptz,
  cancelled_at     timestamptz,
  linked_to        uuid REFERENCES erasure_requests (id),
  UNIQUE (owner, idempotency_key)
);
-- At most one request in flight per subject: a concurrent second one fails this index
-- and is linked to the first instead of fanning out twice.
CREATE UNIQUE INDEX erasure_requests_one_in_flight
  ON erasure_requests (subject_hash)
  WHERE linked_to IS NULL AND status IN ('received', 'scheduled', 'in_progress');
CREATE INDEX erasure_requests_linked_to ON erasure_requests (linked_to) WHERE linked_to IS NOT NULL;
-- Keyset pagination, newest first.
CREATE INDEX erasure_requests_page ON erasure_requests (received_at DESC, id DESC);
CREATE INDEX erasure_requests_open_deadline ON erasure_requests (deadline)
  WHERE status IN ('received', 'scheduled', 'in_progress', 'needs_attention');

-- One task per (request, target): the plan.
CREATE TABLE erasure_tasks (
  request_id       uuid NOT NULL REFERENCES erasure_requests (id),
  target           text NOT NULL REFERENCES targets (name),
  state            text NOT NULL DEFAULT 'pending'
                   CHECK (state IN ('pending', 'dispatched', 'retrying', 'acked', 'failed', 'cancelled')),
  outcome          text CHECK (outcome IN ('deleted', 'not_found')),
  priority         smallint NOT NULL,
  attempts         integer NOT NULL DEFAULT 0,
  next_attempt_at  timestamptz NOT NULL,
  last_error       text,
  evidence         jsonb,
  dispatched_at    timestamptz,
  acked_at         timestamptz,
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (request_id, target)
);
CREATE INDEX erasure_tasks_due ON erasure_tasks (priority, next_attempt_at)
  WHERE state IN ('pending', 'retrying');
CREATE INDEX erasure_tasks_target ON erasure_tasks (target, state);

-- Append-only journal. Intake writes entries in its transaction; a single sealer then
-- assigns `chain_seq` and `hash = sha256(prev_hash || canonical entry)` in commit order,
-- so a concurrent writer never waits on one global lock (see services/shared/journal).
CREATE TABLE journal (
  id          bigserial PRIMARY KEY,
  request_id  uuid,
  kind        text NOT NULL,
  actor       text,
  detail      jsonb NOT NULL DEFAULT '{}',
  at          timestamptz NOT NULL DEFAULT clock_timestamp(),
  chain_seq   bigint UNIQUE,
  prev_hash   bytea,
  hash        bytea
);
CREATE INDEX journal_request ON journal (request_id, id);
CREATE INDEX journal_unsealed ON journal (id) WHERE chain_seq IS NULL;

-- Entries may only be sealed (chain fields set once), never changed or deleted.
CREATE FUNCTION journal_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    RAISE EXCEPTION 'journal is append-only' USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.chain_seq IS NOT NULL
     OR NEW.id <> OLD.id OR NEW.request_id IS DISTINCT FROM OLD.request_id OR NEW.kind <> OLD.kind
     OR NEW.actor IS DISTINCT FROM OLD.actor OR NEW.detail <> OLD.detail OR NEW.at <> OLD.at THEN
    RAISE EXCEPTION 'journal is append-only' USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER journal_append_only BEFORE UPDATE OR DELETE ON journal
  FOR EACH ROW EXECUTE FUNCTION journal_append_only();

-- Transactional outbox: events written with the state change, published by the relay.
-- Claimed by status + lease with FOR UPDATE SKIP LOCKED, never by "id > last sent".
CREATE TABLE outbox (
  id            bigserial PRIMARY KEY,
  topic         text NOT NULL,
  event_key     text NOT NULL,
  payload       jsonb NOT NULL,
  request_id    uuid,
  status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'sent', 'cancelled')),
  available_at  timestamptz NOT NULL DEFAULT now(),
  lease_owner   text,
  lease_until   timestamptz,
  attempts      integer NOT NULL DEFAULT 0,
  last_error    text,
  created_at    timestamptz NOT NULL DEFAULT now(),
  sent_at       timestamptz
);
CREATE INDEX outbox_pending ON outbox (available_at, id) WHERE status = 'pending';
CREATE INDEX outbox_request ON outbox (request_id);
