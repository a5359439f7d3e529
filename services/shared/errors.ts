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
