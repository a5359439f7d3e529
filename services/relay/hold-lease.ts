import type pg from 'pg';

/**
 * Pushes the lease of rows this relay still holds one lease further on. Rows another relay
 * has taken since, or that are sent or cancelled, are not ours and stay as they are.
 */
const RENEW_LEASE = `
UPDATE outbox
   SET lease_until = now() + $3 * interval '1 millisecond'
 WHERE id = ANY($1::bigint[])
   AND lease_owner = $2
   AND status = 'pending'`;

export interface LeaseHoldOptions {
  /** This relay's lease owner name (RELAY_ID). */
  readonly owner: string;
  /** RELAY_LEASE_MS: renewed every third of it. */
  readonly leaseMs: number;
  /** The hold ends by itself after this many leases, so a send that never settles cannot keep rows forever. */
  readonly maxLeases: number;
  /** A renewal failed (the database), or the hold reached maxLeases. */
  readonly onWarning: (warning: { code: string; error?: unknown }) => void;
}

export interface LeaseHold {
  /** Stops renewing; the rows keep the lease they have until it runs out or they are marked. */
  release(): void;
}

/**
 * Keeps a claimed batch leased to this relay while it is being published and marked sent.
 * Without it, a send slowed by the cluster (metadata lookups and kafkajs' retries can take
 * longer than the lease) lets another relay claim the same rows and the subject's next
 * ones, publish them, and then this relay's late copy lands after them: a duplicate that
 * also breaks the subject's order in the topic. A relay that crashes stops renewing, so its
 * lease still runs out and another relay republishes (at least once).
 */
export function holdLease(pool: pg.Pool, ids: readonly string[], opts: LeaseHoldOptions): LeaseHold {
  const every = Math.max(Math.floor(opts.leaseMs / 3), 10);
  const renewals = Math.max(1, Math.floor((opts.maxLeases * opts.leaseMs) / every));
  let done = 0;
  let inFlight = false;
  const timer = setInterval(() => {
    if (inFlight) return;
    if (done >= renewals) {
      clearInterval(timer);
      opts.onWarning({ code: 'WARN_RELAY_LEASE_HOLD_ENDED' });
      return;
    }
    done += 1;
    inFlight = true;
    pool
      .query({ name: 'relay_renew_lease', text: RENEW_LEASE, values: [ids, opts.owner, opts.leaseMs] })
      .catch((error: unknown) => opts.onWarning({ code: 'WARN_RELAY_LEASE_RENEW', error }))
      .finally(() => {
        inFlight = false;
      });
  }, every);
  timer.unref();
  return { release: () => clearInterval(timer) };
}
