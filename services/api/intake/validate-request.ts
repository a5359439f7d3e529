import { createHash } from 'node:crypto';
import { problem, type ProblemError } from '../../shared/errors.ts';
import { normaliseIdentifier, type Identifier, type IdentifierType } from '../../shared/identifiers.ts';
import {
  addPolicyInterval,
  PRIORITIES,
  REASON_POLICY,
  REASONS,
  type Priority,
  type Reason,
} from '../../shared/reasons.ts';
import { CONTROL_CHARACTERS, printableKey } from '../http/read-json-body.ts';

export interface ErasureRequestInput {
  identifiers: Identifier[];
  reason: Reason;
  priority: Priority;
  notBefore: Date | null;
  /** SHA-256 of the canonical normalised body: what "same body" means for idempotency. */
  bodySha256: Buffer;
}

const FIELDS = new Set(['identifiers', 'reason', 'priority', 'notBefore']);
export const MAX_IDENTIFIERS = 20;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})$/;

/** An ISO-8601 date-time with a zone whose calendar date exists (Date.parse rolls 02-30 into March). */
export function isIsoDateTime(v: unknown): v is string {
  if (typeof v !== 'string' || !ISO_8601.test(v) || Number.isNaN(Date.parse(v))) return false;
  const [y, m, d] = v.slice(0, 10).split('-').map(Number) as [number, number, number];
  return m >= 1 && m <= 12 && d >= 1 && d <= new Date(Date.UTC(y, m, 0)).getUTCDate();
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Validates and normalises one erasure request. Throws a ProblemError with a stable code;
 * messages name fields and types, never identifier values. `extraFields` are allowed keys
 * beyond the request's own (the batch item's idempotencyKey).
 */
export function validateErasureRequest(
  body: unknown,
  types: ReadonlyMap<string, IdentifierType>,
  extraFields: readonly string[] = [],
  now: Date = new Date(),
): ErasureRequestInput {
  if (!isObject(body)) throw problem('ERR_VALIDATION', 'the body must be a JSON object');
  for (const key of Object.keys(body)) {
    if (!FIELDS.has(key) && !extraFields.includes(key)) {
      throw problem('ERR_UNKNOWN_FIELD', `unknown field "${printableKey(key)}"`, {
        field: key.slice(0, 64),
      });
    }
  }
  const { identifiers, reason, priority, notBefore } = body;
  if (!Array.isArray(identifiers) || identifiers.length === 0) {
    throw problem('ERR_VALIDATION', 'identifiers must be a non-empty array of {type, value}', {
      field: 'identifiers',
    });
  }
  if (identifiers.length > MAX_IDENTIFIERS) {
    throw problem('ERR_VALIDATION', `at most ${MAX_IDENTIFIERS} identifiers per request`, {
      field: 'identifiers',
    });
  }
  const normalised: Identifier[] = [];
  const seen = new Set<string>();
  identifiers.forEach((raw, i) => {
    const field = `identifiers[${i}]`;
    if (!isObject(raw))
      throw problem('ERR_VALIDATION', `${field} must be an object {type, value}`, { field });
    for (const key of Object.keys(raw)) {
      if (key !== 'type' && key !== 'value') {
        throw problem('ERR_UNKNOWN_FIELD', `unknown field in ${field}`, {
          field: `${field}.${key.slice(0, 64)}`,
        });
      }
    }
    if (typeof raw['type'] !== 'string' || typeof raw['value'] !== 'string') {
      throw problem('ERR_VALIDATION', `${field} needs string "type" and "value"`, { field });
    }
    if (CONTROL_CHARACTERS.test(raw['type']) || CONTROL_CHARACTERS.test(raw['value'])) {
      throw problem('ERR_CONTROL_CHARACTERS', `${field} contains control characters`, { field });
    }
    const res = normaliseIdentifier({ type: raw['type'], value: raw['value'] }, types);
    if ('code' in res) {
      const safeType = /^[a-z0-9_]{1,40}$/.test(raw['type']) ? raw['type'] : '(invalid)';
      throw problem(
        res.code,
        res.code === 'ERR_UNKNOWN_IDENTIFIER_TYPE' ? `unknown identifier type "${safeType}"` : res.message,
        {
          field,
        },
      );
    }
    const key = `${raw['type']}\u0000${res.value}`;
    if (!seen.has(key)) {
      seen.add(key);
      normalised.push({ type: raw['type'], value: res.value });
    }
  });

  if (typeof reason !== 'string' || !(REASONS as readonly string[]).includes(reason)) {
    throw problem('ERR_VALIDATION', `reason must be one of ${REASONS.join(', ')}`, { field: 'reason' });
  }
  let prio: Priority = REASON_POLICY[reason as Reason].defaultPriority;
  if (priority !== undefined) {
    if (typeof priority !== 'string' || !(PRIORITIES as readonly string[]).includes(priority)) {
      throw problem('ERR_VALIDATION', `priority must be one of ${PRIORITIES.join(', ')}`, {
        field: 'priority',
      });
    }
    prio = priority as Priority;
  }
  let nb: Date | null = null;
  if (notBefore !== undefined && notBefore !== null) {
    if (!isIsoDateTime(notBefore)) {
      throw problem('ERR_VALIDATION', 'notBefore must be an ISO-8601 date-time with a time zone', {
        field: 'notBefore',
      });
    }
    nb = new Date(notBefore);
    const maxGraceMs = 90 * 24 * 3600 * 1000;
    if (nb.getTime() - now.getTime() > maxGraceMs) {
      throw problem('ERR_VALIDATION', 'notBefore may be at most 90 days ahead', { field: 'notBefore' });
    }
    // A time in the past only means "no grace period", but one before 1970 is a mistake, and
    // one whose UTC time falls in year 0 or BC ("0000-01-01T00:00:00Z",
    // "0001-01-01T00:00:00+01:00") is stored by PostgreSQL as BC and cannot be put in the
    // erasure event: the row would stay unpublished, holding back the subject's later events.
    if (nb.getTime() < 0) {
      throw problem('ERR_VALIDATION', 'notBefore may not be before 1970-01-01T00:00:00Z', {
        field: 'notBefore',
      });
    }
    // A legal deadline runs from receipt: a request held past it would be overdue before
    // any target is called. Refused here, where the caller can still act on it.
    const policy = REASON_POLICY[reason as Reason];
    if (policy.deadlineFrom === 'receipt' && nb >= addPolicyInterval(now, policy.deadline)) {
      throw problem(
        'ERR_VALIDATION',
        `notBefore must come before the legal deadline of a ${String(reason)} request (${policy.basis}); a grace period cannot postpone it`,
        { field: 'notBefore' },
      );
    }
  }
  // By type, then value: comparing `type + value` let a type that prefixes another
  // (user_id, user_id_v2) order one set two ways, and a reordered body answered 409.
  const sorted = [...normalised].sort((a, b) =>
    a.type !== b.type ? (a.type < b.type ? -1 : 1) : a.value < b.value ? -1 : a.value > b.value ? 1 : 0,
  );
  const canonical = JSON.stringify({
    identifiers: sorted,
    reason,
    priority: prio,
    notBefore: nb?.toISOString() ?? null,
  });
  return {
    identifiers: normalised,
    reason: reason as Reason,
    priority: prio,
    notBefore: nb,
    bodySha256: createHash('sha256').update(canonical).digest(),
  };
}

export function isProblem(err: unknown): err is ProblemError {
  return err instanceof Error && 'status' in err && 'code' in err;
}

/** Idempotency keys: printable ASCII, 1–255 characters (the same bound Stripe uses). */
export function checkIdempotencyKey(key: unknown, field = 'Idempotency-Key'): string {
  if (key === undefined || key === null || key === '') {
    throw problem('ERR_IDEMPOTENCY_KEY_MISSING', `${field} is required`);
  }
  if (typeof key !== 'string' || !/^[\x21-\x7e]{1,255}$/.test(key)) {
    throw problem('ERR_VALIDATION', `${field} must be 1 to 255 printable ASCII characters`, { field });
  }
  return key;
}
