import { createHmac } from 'node:crypto';
import type { Identifier } from './identifiers.ts';

/**
 * Keyed hash (HMAC-SHA256) of a normalised identifier set. It links requests for the same
 * subject and keys Kafka events without ever storing or sending a plain value where a
 * hash would do; a plain hash of an email address is reversed by a dictionary, an HMAC
 * is not without the key.
 */
export function subjectHash(key: Buffer, identifiers: readonly Identifier[]): Buffer {
  const canonical = identifiers
    .map((i) => `${i.type}\u0000${i.value}`)
    .sort()
    .join('\u0001');
  return createHmac('sha256', key).update(canonical).digest();
}

/** HMAC of one identifier: the offline dataset's join key for warehouse tables. */
export function identifierHash(key: Buffer, id: Identifier): Buffer {
  return createHmac('sha256', key).update(`${id.type}\u0000${id.value}`).digest();
}
