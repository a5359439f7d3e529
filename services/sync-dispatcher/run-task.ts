/**
 * One claimed task, start to outcome: render the call(s), wait for the target's gate, send,
 * classify, and decide what the task becomes. Returns the TaskResult to record; never throws
 * for anything a partner does (a bug in here is caught by the dispatcher loop).
 *
 * Waiting for the gate never outlasts the lease. A lease that ran out while this live replica
 * waited would let another pass or replica retake the task: an attempt counted twice (a
 * target that is merely down could use up a task's attempts with no call made), a retake
 * recorded as if we had crashed, and two calls once we got our ticket, ours then dropped.
 *
 * - Before the first call nothing has happened, so a task the gate will not admit in time is
 *   handed back: the claim is undone (its attempt not counted, no lease, the state and due
 *   time it had) and the task waits unclaimed in the database, as circuit-breaker.ts says.
 *   A breaker that refuses the first call hands it back at once: it stays shut for a
 *   cool-down or a probe that may fail again, for a target that may be down for hours, and
 *   holding claims that long (renewing their leases) would only keep them from replicas
 *   whose breaker is closed. The due time can stay in the past: this replica claims again
 *   only when the gate has room (capacity() is 0 while the breaker is open and until a
 *   token is there), so a hand-back cannot spin, and the task keeps its place in line.
 * - Between the calls of a task with several, the calls made make the attempt real and
 *   undoing it would repeat them. The wait is for a rate token only (the breaker gates a
 *   task's first call), so it is bounded, and the lease is extended to cover it.
 */
import type { TargetHttp } from '../shared/validate-target.ts';
import type { ClaimedTask } from './claim-sync-tasks.ts';
import { callClass, classifyCall, type CallOutcome } from './classify-outcome.ts';
import { planRetry, type SyncRetryPolicy } from './plan-retry.ts';
import type { TaskResult } from './record-outcome.ts';
import { renderCalls } from './render-call.ts';
import { sendCall, type HttpAgents } from './send-call.ts';
import type { CallTicket, TargetGate } from './target-gate.ts';

export interface RunTaskDeps {
  readonly gate: TargetGate;
  readonly agents: HttpAgents;
  /** Auth secrets by secretRef. */
  readonly secrets: ReadonlyMap<string, string>;
  /** Aborts calls in flight (shutdown). */
  readonly signal: AbortSignal;
  readonly now: () => number;
  readonly random: () => number;
  /** The target's retry policy: its own maxAttempts / maxAgeSeconds, else the defaults. */
  readonly retryPolicy: (http: TargetHttp) => SyncRetryPolicy;
  /** Longest Retry-After honoured, in milliseconds. */
  readonly retryAfterCapMs: number;
  /** Sets this task's lease to `ms` from now; resolves false if it is no longer ours. */
  readonly extendLease: (ms: number) => Promise<boolean>;
  /** SYNC_LEASE_MARGIN_MS: a claim's lease is the target's timeoutMs plus this, in milliseconds. */
  readonly leaseMarginMs: number;
  /** When the claim statement was sent (this clock, epoch ms): its lease runs from no earlier. */
  readonly claimedAt: number;
  /** One call done: its class and latency in seconds (metrics). */
  readonly onCall: (cls: string, seconds: number) => void;
}

export const RELEASED_MESSAGE =
  'the dispatcher stopped during the call; it is called again with the same Idempotency-Key';

type Admission =
  | { readonly kind: 'ticket'; readonly ticket: CallTicket }
  | { readonly kind: 'aborted' }
  | { readonly kind: 'hand_back'; readonly cause: 'breaker_open' | 'rate_limited' }
  | { readonly kind: 'lease_lost' };

export async function runTask(task: ClaimedTask, deps: RunTaskDeps): Promise<TaskResult> {
  const { http } = task;
  const policy = deps.retryPolicy(http);
  const base = { target: task.target, attempt: task.attempt };
  const started = deps.now();

  if (task.attempt > policy.maxAttempts) {
    // Only a retake gets here: the previous holder's answer was never recorded.
    return failed(
      `gave up after ${task.attempt - 1} attempts; the last call's answer was never recorded`,
      null,
      {
        ...base,
        cause: 'max_attempts',
      },
    );
  }
  const rendered = renderCalls({
    requestId: task.requestId,
    target: task.target,
    http,
    identifiers: task.identifiers,
    secrets: deps.secrets,
    nowMs: deps.now(),
  });
  if (!rendered.ok) {
    // A missing secret is the dispatcher's configuration, which a restart fixes: retried.
    if (rendered.cause === 'missing_secret')
      return retryOrGiveUp('missing_secret', null, undefined, rendered.message);
    return failed(rendered.message, null, { ...base, cause: rendered.cause });
  }
  const { calls } = rendered;
  // This clock's view of when the lease runs out: never later than the database's, which
  // stamped it after the claim or extension was sent.
  let leaseEndsAt = deps.claimedAt + http.timeoutMs + deps.leaseMarginMs;
  const leaseFor = (callsLeft: number) => callsLeft * (http.timeoutMs + 1000) + deps.leaseMarginMs;
  const extendLease = async (ms: number) => {
    const sentAt = deps.now();
    const ours = await deps.extendLease(ms);
    if (ours) leaseEndsAt = sentAt + ms;
    return ours;
  };
  // A task gone from us before its first call (acknowledged through the API meanwhile, or
  // retaken after a stall) is not called: the writer would drop the answer as stale anyway.
  if (calls.length > 1 && !(await extendLease(leaseFor(calls.length)))) return released();

  let deletedBy: Extract<CallOutcome, { class: 'deleted' | 'not_found' }> | undefined;
  let last: Extract<CallOutcome, { class: 'deleted' | 'not_found' }> | undefined;
  for (const [i, call] of calls.entries()) {
    const admitted = await admit(i === 0, calls.length - i);
    if (admitted.kind === 'hand_back') return handBack(admitted.cause);
    // Shutdown; or the task is no longer ours (lease_lost: acknowledged through the API
    // meanwhile, or retaken after a stall), and the writer, which checks the same lease,
    // drops what is returned as stale.
    if (admitted.kind !== 'ticket') return released();
    const { ticket } = admitted;
    const t0 = deps.now();
    const result = await sendCall(call, {
      timeoutMs: http.timeoutMs,
      signal: deps.signal,
      agents: deps.agents,
    });
    const { outcome, health } = classifyCall(result, {
      notFoundStatuses: http.notFoundStatuses,
      nowMs: deps.now(),
      retryAfterCapMs: deps.retryAfterCapMs,
    });
    deps.gate.endCall(ticket, outcome.class === 'released' ? 'cancelled' : health);
    deps.onCall(callClass(result, http.notFoundStatuses), (deps.now() - t0) / 1000);
    if (outcome.class === 'released') return released();
    if (outcome.class === 'retry')
      return retryOrGiveUp(outcome.cause, outcome.httpStatus, outcome.retryAfterMs, outcome.message);
    if (outcome.class === 'fail')
      return failed(
        outcome.message,
        { status: 'failed', httpStatus: outcome.httpStatus, detail: outcome.detail },
        { ...base, cause: outcome.cause, httpStatus: outcome.httpStatus },
      );
    last = outcome;
    if (outcome.class === 'deleted') deletedBy ??= outcome;
  }
  // Every call answered deleted or not found: deleted if any deleted, else not found.
  const shown = deletedBy ?? last!;
  return {
    state: 'acked',
    outcome: shown.class,
    evidence: {
      status: shown.class,
      httpStatus: shown.httpStatus,
      detail: shown.detail,
      calls: calls.length,
      ackedAt: new Date(deps.now()).toISOString(),
    },
    journal: {
      ...base,
      outcome: shown.class,
      httpStatus: shown.httpStatus,
      calls: calls.length,
      detailLength: shown.detail?.length ?? 0,
    },
  };

  function retryOrGiveUp(
    cause: string,
    httpStatus: number | null,
    retryAfterMs: number | undefined,
    message: string,
  ): TaskResult {
    const plan = planRetry(
      task.attempt,
      task.ageMs + (deps.now() - started),
      retryAfterMs,
      policy,
      deps.random,
    );
    if (plan.kind === 'give_up')
      return failed(`${plan.message}; last error: ${message}`, null, {
        ...base,
        cause: plan.cause,
        lastCause: cause,
        httpStatus,
      });
    return {
      state: 'retrying',
      kind: 'task.retrying',
      delayMs: plan.delayMs,
      lastError: message,
      journal: { ...base, cause, httpStatus, retryInMs: plan.delayMs },
    };
  }

  /**
   * Waits until the gate admits the next call, for as long as the lease covers it: the call
   * must start early enough to leave the lease this call and the ones after it, plus half the
   * margin to write the outcome. Shutdown ends the wait as before (the task is released).
   */
  async function admit(first: boolean, callsLeft: number): Promise<Admission> {
    for (;;) {
      if (deps.signal.aborted) return { kind: 'aborted' };
      const r = deps.gate.beginCall(first);
      if (r.ok) return { kind: 'ticket', ticket: r.ticket };
      const lateBy =
        deps.now() + r.waitMs - (leaseEndsAt - callsLeft * http.timeoutMs - deps.leaseMarginMs / 2);
      if (first) {
        if (r.blockedBy === 'breaker') return { kind: 'hand_back', cause: 'breaker_open' };
        if (lateBy > 0) return { kind: 'hand_back', cause: 'rate_limited' };
      } else if (lateBy > 0 && !(await extendLease(r.waitMs + leaseFor(callsLeft)))) {
        return { kind: 'lease_lost' };
      }
      await pause(Math.min(Math.max(r.waitMs, 1), 1000), deps.signal);
    }
  }

  function handBack(cause: 'breaker_open' | 'rate_limited'): TaskResult {
    return {
      state: 'handed_back',
      restore: task.claimedFrom === 'pending' ? 'pending' : 'retrying',
      dueAt: task.dueAt,
      journal: { ...base, cause, called: false },
    };
  }

  function released(): TaskResult {
    return {
      state: 'retrying',
      kind: 'task.released',
      delayMs: 0,
      lastError: RELEASED_MESSAGE,
      journal: { ...base, cause: 'dispatcher_stopped' },
    };
  }
}

function failed(
  lastError: string,
  evidence: Record<string, unknown> | null,
  journal: Record<string, unknown>,
): TaskResult {
  return { state: 'failed', lastError, evidence, journal };
}

/** Sleeps `ms`, or less if `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(done, ms);
    signal.addEventListener('abort', done, { once: true });
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
  });
}
