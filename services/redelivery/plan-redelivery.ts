import { computeBackoff, type BackoffPolicy } from '../shared/compute-backoff.ts';

export interface RedeliveryPolicy {
  /** Deliveries (the first publication included) before a silent target's task fails. */
  readonly maxAttempts: number;
  /** Extra wait on top of the ack SLA after each redelivery, growing per redelivery. */
  readonly backoff: BackoffPolicy;
}

/** What to do with one task whose ack SLA ran out. */
export type RedeliveryPlan =
  | {
      readonly kind: 'redeliver';
      /** The delivery this is: 2 for the first redelivery (the event's redelivery.attempt). */
      readonly attempt: number;
      /** From now until the task is next looked at, in milliseconds: the SLA again plus backoff. */
      readonly nextInMs: number;
    }
  | {
      readonly kind: 'give_up';
      /** Deliveries made, all unanswered (for the error a person reads). */
      readonly deliveries: number;
    };

/**
 * Pure scheduling math. `deliveries` is the task's attempts column: mark-sent counts the
 * first publication as 1, each redelivery adds one. Values below 1 count as 1 (a task that
 * is late was delivered at least once). After maxAttempts unanswered deliveries another one
 * is unlikely to help and a person must look, so the task fails instead.
 *
 * The partner gets its full SLA again after every redelivery, plus a backoff that grows
 * with each one, so a partner that is down for hours is not hammered every SLA period.
 */
export function planRedelivery(
  task: { readonly deliveries: number; readonly ackSlaSeconds: number },
  policy: RedeliveryPolicy,
  random: () => number,
): RedeliveryPlan {
  const deliveries = Number.isFinite(task.deliveries) ? Math.max(1, Math.floor(task.deliveries)) : 1;
  if (deliveries >= policy.maxAttempts) return { kind: 'give_up', deliveries };
  // computeBackoff's attempt 1 is the first retry: here, the first redelivery.
  const backoffMs = computeBackoff(deliveries, policy.backoff, random);
  return { kind: 'redeliver', attempt: deliveries + 1, nextInMs: task.ackSlaSeconds * 1000 + backoffMs };
}

/** The last_error of a task that ran out of deliveries: what a person reads. */
export function giveUpMessage(deliveries: number): string {
  return `no acknowledgement after ${deliveries} deliveries`;
}
