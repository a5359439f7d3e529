import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { TOPICS } from '../../services/shared/event-codec.ts';

export interface RequestedRowOptions {
  /** The Kafka key (hex subject HMAC); a new random subject by default. */
  key?: string;
  availableAt?: string;
  status?: string;
  topic?: string;
  /** Receives the row's identifier value, for tests that scan logs for it. */
  secrets?: string[];
}

/**
 * A requested-event outbox row as intake writes it (insert-requests.ts): key = hex subject
 * HMAC, JSON payload with the schema's fields, one user_id of random value.
 */
export async function insertRequestedRow(pool: pg.Pool, opts: RequestedRowOptions = {}) {
  const eventId = randomUUID();
  const requestId = randomUUID();
  const value = `uid-${randomBytes(8).toString('hex')}`;
  opts.secrets?.push(value);
  const key = opts.key ?? randomBytes(32).toString('hex');
  const payload = {
    eventId,
    requestId,
    identifiers: [{ type: 'user_id', value }],
    reason: 'gdpr_art17',
    requestedAt: new Date().toISOString(),
    priority: 'normal',
    notBefore: null,
    deadline: new Date(Date.now() + 30 * 86_400_000).toISOString(),
    targets: ['orders-db'],
  };
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO outbox (topic, event_key, payload, request_id, available_at, status)
     VALUES ($1, $2, $3, $4, coalesce($5::timestamptz, now()), $6) RETURNING id`,
    [
      opts.topic ?? TOPICS.requested,
      key,
      payload,
      requestId,
      opts.availableAt ?? null,
      opts.status ?? 'pending',
    ],
  );
  return { id: rows[0]!.id, eventId, requestId, key, value };
}
