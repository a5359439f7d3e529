/**
 * Why a subject's data is erased, and what follows from it: the legal deadline and the
 * default priority. Policy as data; the deadline is computed by PostgreSQL from the
 * request's receipt time (`received_at + interval`), so both come from one clock.
 */
export const REASONS = [
  'gdpr_art17',
  'ccpa',
  'account_deletion',
  'tester_cleanup',
  'retention_expiry',
] as const;
export type Reason = (typeof REASONS)[number];

export const PRIORITIES = ['legal', 'normal', 'bulk'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Dispatch order: lower goes first. */
export const PRIORITY_RANK: Record<Priority, number> = { legal: 0, normal: 1, bulk: 2 };

export interface ReasonPolicy {
  /** PostgreSQL interval added to the receipt time. */
  deadline: string;
  defaultPriority: Priority;
  /** Where the deadline comes from, for the report. */
  basis: string;
  /**
   * What the deadline counts from. `receipt` for a legal deadline: the law's clock runs
   * from the request's receipt, so a grace period (`notBefore`) cannot move it and one
   * past it is refused at intake. `notBefore` for a house policy: the deadline counts
   * from the end of the grace period (an account deletion with a 30-day restore window is
   * due 30 days after the window closes, not overdue the moment it is dispatched).
   */
  deadlineFrom: 'receipt' | 'notBefore';
}

export const REASON_POLICY: Record<Reason, ReasonPolicy> = {
  gdpr_art17: {
    deadline: '1 month',
    defaultPriority: 'legal',
    basis: 'GDPR Art. 12(3): one month from receipt',
    deadlineFrom: 'receipt',
  },
  ccpa: {
    deadline: '45 days',
    defaultPriority: 'legal',
    basis: 'CCPA §1798.130: 45 days from receipt',
    deadlineFrom: 'receipt',
  },
  account_deletion: {
    deadline: '30 days',
    defaultPriority: 'normal',
    basis: 'account deletion policy: 30 days after the grace period',
    deadlineFrom: 'notBefore',
  },
  tester_cleanup: {
    deadline: '7 days',
    defaultPriority: 'bulk',
    basis: 'test data cleanup: 7 days after the grace period',
    deadlineFrom: 'notBefore',
  },
  retention_expiry: {
    deadline: '30 days',
    defaultPriority: 'bulk',
    basis: 'retention schedule: 30 days after the grace period',
    deadlineFrom: 'notBefore',
  },
};

/**
 * `start` plus a policy interval ('1 month', '45 days'), as PostgreSQL adds it in UTC: a
 * month is the same day of the next month, or its last day when that day does not exist
 * (January 31 + 1 month = February 28 or 29). For checks made before the row is written;
 * the stored deadline is PostgreSQL's own.
 */
export function addPolicyInterval(start: Date, interval: string): Date {
  const m = /^(\d+) (day|month)s?$/.exec(interval);
  if (!m) throw new Error(`unsupported policy interval "${interval}"`);
  const n = Number(m[1]);
  if (m[2] === 'day') return new Date(start.getTime() + n * 86_400_000);
  const d = new Date(start.getTime());
  const day = d.getUTCDate();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() + n);
  const last = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 0)).getUTCDate();
  d.setUTCDate(Math.min(day, last));
  return d;
}
