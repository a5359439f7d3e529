/**
 * One base class for every error the pipeline raises on purpose. `code` is stable and
 * documented (docs/errors.md, checked by a test); `status` is the HTTP status at the
 * edge; `retriable` says whether trying again may succeed (kafkajs' convention).
 */
export class ErasureError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status = 500,
    readonly retriable = false,
    readonly detail?: Record<string, unknown>,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** Bad configuration found at start-up; every problem is listed at once. */
export class ConfigurationError extends ErasureError {
  constructor(readonly problems: string[]) {
    super('ERR_CONFIG', `invalid configuration: ${problems.join('; ')}`, 500, false);
  }
}

/** A database migration file changed after it was applied, or failed to apply. */
export class MigrationError extends ErasureError {
  constructor(message: string) {
    super('ERR_MIGRATION', message, 500, false);
  }
}

/**
 * A client error answered as RFC 9457 problem+json. `code` is the stable, documented
 * identifier clients switch on (docs/errors.md); the message never carries identifier values.
 */
export class ProblemError extends ErasureError {
  constructor(code: string, status: number, message: string, detail?: Record<string, unknown>) {
    super(code, message, status, false, detail);
  }
}

/** Every problem code the HTTP API answers with, its status and its title. */
export const PROBLEM_CODES = {
  ERR_MALFORMED_JSON: { status: 400, title: 'Malformed JSON' },
  ERR_DUPLICATE_KEY: { status: 400, title: 'Duplicate JSON key' },
  ERR_INVALID_UTF8: { status: 400, title: 'Body is not valid UTF-8' },
  ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, title: 'Unsupported media type' },
  ERR_BODY_TOO_LARGE: { status: 413, title: 'Body too large' },
  ERR_VALIDATION: { status: 400, title: 'Invalid request' },
  ERR_UNKNOWN_FIELD: { status: 400, title: 'Unknown field' },
  ERR_CONTROL_CHARACTERS: { status: 400, title: 'Control characters are not allowed' },
  ERR_UNKNOWN_IDENTIFIER_TYPE: { status: 400, title: 'Unknown identifier type' },
  ERR_INVALID_IDENTIFIER: { status: 400, title: 'Invalid identifier' },
  ERR_BATCH_TOO_LARGE: { status: 413, title: 'Batch too large' },
  ERR_IDEMPOTENCY_KEY_MISSING: { status: 400, title: 'Idempotency-Key header required' },
  ERR_IDEMPOTENCY_CONFLICT: { status: 409, title: 'Idempotency key reused with another body' },
  ERR_UNAUTHENTICATED: { status: 401, title: 'Authentication required' },
  ERR_FORBIDDEN: { status: 403, title: 'Not allowed' },
  ERR_NOT_FOUND: { status: 404, title: 'Not found' },
  ERR_RATE_LIMITED: { status: 429, title: 'Too many requests' },
  ERR_CANCEL_CONFLICT: { status: 409, title: 'Request can no longer be cancelled' },
  ERR_CONFLICT: { status: 409, title: 'Conflict' },
  ERR_INVALID_TARGET: { status: 400, title: 'Invalid target' },
  ERR_INVALID_CURSOR: { status: 400, title: 'Invalid cursor' },
  ERR_MALFORMED_HTTP: { status: 400, title: 'Malformed HTTP request' },
  ERR_HEADERS_TOO_LARGE: { status: 431, title: 'Request headers too large' },
  ERR_REQUEST_TIMEOUT: { status: 408, title: 'Request timed out' },
  ERR_EXPECTATION_FAILED: { status: 417, title: 'Expectation not supported' },
  ERR_UNAVAILABLE: { status: 503, title: 'Dependency unavailable' },
  ERR_INTERNAL: { status: 500, title: 'Internal error' },
} as const;

export type ProblemCode = keyof typeof PROBLEM_CODES;

export function problem(code: ProblemCode, message: string, detail?: Record<string, unknown>): ProblemError {
  return new ProblemError(code, PROBLEM_CODES[code].status, message, detail);
}
