-- The built-in identifier types' rows say what their code does (services/shared/identifiers.ts,
-- BUILTIN_TYPES): 0001 left them at the column defaults, so GET /v1/identifier-types showed
-- every built-in as 256 characters, not lower-cased, while email and device_id values are
-- lower-cased, and the length check (read from these rows) let a 255-character email in
-- where the contract says 254 (RFC 5321).
-- Forward-only: a published migration is never edited; changes go in a new file.
UPDATE identifier_types SET max_length = 254, lowercase = true WHERE name = 'email' AND builtin;
UPDATE identifier_types SET max_length = 32 WHERE name = 'phone' AND builtin;
UPDATE identifier_types SET lowercase = true WHERE name = 'device_id' AND builtin;
