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
}

export const REASON_POLICY: Record<Reason, ReasonPolicy> = {
  gdpr_art17: {
    deadline: '1 month',
    defaultPriority: 'legal',
    basis: 'GDPR Art. 12(3): one month from receipt',
  },
  ccpa: { deadline: '45 days', defaultPriority: 'legal', basis: 'CCPA §1798.130: 45 days from receipt' },
  account_deletion: {
    deadline: '30 days',
    defaultPriority: 'normal',
    basis: 'account deletion policy: 30 days',
  },
  tester_cleanup: { deadline: '7 days', defaultPriority: 'bulk', basis: 'test data cleanup: 7 days' },
  retention_expiry: { deadline: '30 days', defaultPriority: 'bulk', basis: 'retention schedule: 30 days' },
};
