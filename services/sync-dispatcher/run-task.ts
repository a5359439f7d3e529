/**
 * One claimed task, start to outcome: render the call(s), wait for the target's gate, send,
 * classify, and decide what the task becomes. Returns the TaskResult to record; never throws
 * for anything a partner does (a bug in here is caught by the dispatcher loop).
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
  /** Lengthens this task's lease (several calls); resolves false if it is no longer ours. */
  readonly extendLease: (ms: number) => Promise<boolean>;
  readonly leaseMarginMs: number;
  /** One call done: its class and latency in seconds (metrics). */
  readonly onCall: (cls: string, seconds: number) => void;
}

export const RELEASED_MESSAGE =
  'the dispatcher stopped during the call; it is called again with the same Idempotency-Key';

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
  if (calls.length > 1) await deps.extendLease(calls.length * (http.timeoutMs + 1000) + deps.leaseMarginMs);

  let deletedBy: Extract<CallOutcome, { class: 'deleted' | 'not_found' }> | undefined;
  let last: Extract<CallOutcome, { class: 'deleted' | 'not_found' }> | undefined;
  for (const [i, call] of calls.entries()) {
    const ticket = await waitForTicket(deps.gate, i === 0, deps.signal);
    if (!ticket) return released();
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

/** Waits for a rate token (and, for a task's first call, the breaker); undefined if aborted. */
async function waitForTicket(
  gate: TargetGate,
  first: boolean,
  signal: AbortSignal,
): Promise<CallTicket | undefined> {
  for (;;) {
    if (signal.aborted) return undefined;
    const r = gate.beginCall(first);
    if (r.ok) return r.ticket;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.min(Math.max(r.waitMs, 1), 1000));
      signal.addEventListener('abort', done, { once: true });
      function done() {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      }
    });
  }
}
