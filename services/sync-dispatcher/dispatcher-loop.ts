/**
 * The dispatcher: one loop that claims what each target's gate can take, and a task runner
 * per claimed task. Claims are one statement each; calls happen outside any transaction (a
 * slow partner never holds a database connection or lock); outcomes are written in batches
 * (outcome-writer.ts). The loop never throws out: a failed pass is logged, counted and
 * retried after a backoff.
 */
import type pg from 'pg';
import type { SyncDispatcherConfig } from './config.ts';
import { computeBackoff } from '../shared/compute-backoff.ts';
import type { Logger } from '../shared/logger.ts';
import type { TargetHttp } from '../shared/validate-target.ts';
import { claimSyncTasks, extendLease, type ClaimedTask } from './claim-sync-tasks.ts';
import { compareDue, planClaims } from './claim-order.ts';
import { failBlockedDependents } from './fail-blocked-dependents.ts';
import { loadSyncTargets } from './load-sync-targets.ts';
import type { SyncRetryPolicy } from './plan-retry.ts';
import { createOutcomeWriter } from './outcome-writer.ts';
import type { TaskResult } from './record-outcome.ts';
import { runTask } from './run-task.ts';
import type { HttpAgents } from './send-call.ts';
import { BREAKER_GAUGE, type SyncMetrics } from './sync-metrics.ts';
import { createTargetGate, type GateLimits, type TargetGate } from './target-gate.ts';

/** Journal actor of the dispatcher's entries. */
export const SYNC_ACTOR = 'sync-dispatcher';

/**
 * The loop's settings: the validated configuration (config.ts documents each one) minus what
 * the composition root uses itself, plus this replica's lease owner name.
 */
export type DispatcherOptions = Omit<
  SyncDispatcherConfig,
  'databaseUrl' | 'dispatcherId' | 'secrets' | 'logLevel'
> & {
  /** This replica's lease owner name; unique per process. */
  readonly owner: string;
};

export interface DispatcherDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly metrics: SyncMetrics;
  readonly options: DispatcherOptions;
  readonly secrets: ReadonlyMap<string, string>;
  readonly agents: HttpAgents;
  readonly now?: () => number;
  readonly random?: () => number;
}

export interface SyncDispatcher {
  start(): void;
  /** Runs a claim pass soon (new work, a slot freed). */
  wake(): void;
  /** Tasks this replica holds now. */
  inFlight(): number;
  /** Stops claiming, lets calls finish within the grace period, aborts the rest and releases them. */
  stop(): Promise<void>;
}

interface Runtime {
  http: TargetHttp;
  paused: boolean;
  gate: TargetGate;
  /** The last claim filled its limit: more is probably due as soon as capacity returns. */
  backlog: boolean;
}

const RECORD_ATTEMPTS = 5;
// Tasks one replica holds at once (calling, or answered and waiting to be written).
const MAX_HELD_TASKS = 2048;
// Passes start at most this often: completions wake the loop, and under load a pass per
// completion would be a claim statement per task instead of one per batch.
const MIN_PASS_GAP_MS = 5;

export function createSyncDispatcher(deps: DispatcherDeps): SyncDispatcher {
  const { pool, options: o, metrics } = deps;
  const logger = deps.logger.child({ component: 'sync-dispatcher' });
  const now = deps.now ?? Date.now;
  const random = deps.random ?? Math.random;
  const runtimes = new Map<string, Runtime>();
  const running = new Set<Promise<void>>();
  const abort = new AbortController();
  let refreshedAt = -Infinity;
  let sweptAt = -Infinity;
  let sweepSoon = false;
  let stopping = false;
  let loopDone: Promise<void> | undefined;
  let wakeRequested = false;
  let wakeSleep: (() => void) | undefined;
  const writer = createOutcomeWriter({ pool, owner: o.owner, actor: SYNC_ACTOR, maxBatch: 256 });

  const limitsOf = (http: TargetHttp): GateLimits => ({
    ratePerSecond: http.rateLimitPerSecond / o.replicas,
    concurrency: Math.max(1, Math.floor(http.concurrency / o.replicas)),
  });
  const retryPolicy = (http: TargetHttp): SyncRetryPolicy => ({
    maxAttempts: http.maxAttempts ?? o.defaults.maxAttempts,
    maxAgeMs: http.maxAgeSeconds !== undefined ? http.maxAgeSeconds * 1000 : o.defaults.maxAgeMs,
    backoff: o.backoff,
  });

  function gauges(name: string, rt: Runtime) {
    const s = rt.gate.snapshot();
    metrics.breakerState.set({ target: name }, BREAKER_GAUGE[s.breaker]);
    metrics.rate.set({ target: name }, s.rate);
    metrics.inFlight.set({ target: name }, s.inFlight);
  }

  async function refreshTargets(): Promise<void> {
    for (const t of await loadSyncTargets(pool)) {
      const rt = runtimes.get(t.name);
      if (!rt) {
        const gate = createTargetGate({
          limits: limitsOf(t.http),
          breaker: o.breaker,
          aimd: o.aimd,
          now,
          onBreakerChange: (from, to) => {
            const meta = { target: t.name, from, to };
            if (to === 'open')
              logger.warn('circuit breaker opened; target not called until it probes', {
                code: 'WARN_SYNC_BREAKER_OPEN',
                ...meta,
              });
            else logger.info('circuit breaker changed state', meta);
            metrics.breakerState.set({ target: t.name }, BREAKER_GAUGE[to]);
          },
          onRateChange: (rate, why) => {
            logger.debug('adaptive rate changed', { target: t.name, rate, why });
            metrics.rate.set({ target: t.name }, rate);
          },
        });
        runtimes.set(t.name, { http: t.http, paused: t.paused, gate, backlog: true });
      } else {
        const before = limitsOf(rt.http);
        const after = limitsOf(t.http);
        if (before.ratePerSecond !== after.ratePerSecond || before.concurrency !== after.concurrency)
          rt.gate.setLimits(after);
        rt.http = t.http;
        rt.paused = t.paused;
      }
    }
    for (const [name, rt] of runtimes) gauges(name, rt);
    refreshedAt = now();
  }

  async function sweep(): Promise<void> {
    sweepSoon = false;
    sweptAt = now();
    // A chain fails one link per round; a bounded number of rounds per sweep.
    for (let round = 0; round < 10; round++) {
      const n = await failBlockedDependents(pool, 500, SYNC_ACTOR);
      if (n > 0)
        logger.warn('tasks failed because a prerequisite target failed', {
          code: 'WARN_SYNC_PREREQUISITE_FAILED',
          tasks: n,
        });
      if (n === 0) break;
    }
  }

  /** One claim pass; returns how long the loop may sleep before the next. */
  async function pass(): Promise<number> {
    if (now() - refreshedAt >= o.targetRefreshMs) await refreshTargets();
    if (sweepSoon || now() - sweptAt >= o.sweepIntervalMs) await sweep();
    const capacities = new Map<string, number>();
    // Outcomes waiting to be written hold their tasks; past this many, let the writer catch up.
    const room = MAX_HELD_TASKS - running.size;
    for (const [name, rt] of runtimes)
      if (!rt.paused) capacities.set(name, Math.min(room, rt.gate.capacity()));
    const plan = planClaims(capacities, o.maxClaimPerTarget);
    // The leases run from no earlier than this (run-task.ts keeps its waits within them).
    const claimedAt = now();
    const tasks =
      plan.targets.length === 0
        ? []
        : await claimSyncTasks(pool, {
            targets: plan.targets,
            limits: plan.limits,
            owner: o.owner,
            leaseMarginMs: o.leaseMarginMs,
            actor: SYNC_ACTOR,
          });
    const claimedPer = new Map<string, number>();
    for (const t of tasks) claimedPer.set(t.target, (claimedPer.get(t.target) ?? 0) + 1);
    plan.targets.forEach((name, i) => {
      runtimes.get(name)!.backlog = (claimedPer.get(name) ?? 0) >= plan.limits[i]!;
    });
    for (const t of [...tasks].sort(compareDue)) launch(t, claimedAt);
    // Targets with a backlog are worth another pass as soon as their gate has room again;
    // a slot freeing wakes the loop by itself (Infinity here).
    let sleepMs = o.pollIntervalMs;
    for (const rt of runtimes.values())
      if (rt.backlog && !rt.paused) sleepMs = Math.min(sleepMs, Math.max(2, rt.gate.nextReadyInMs()));
    return sleepMs;
  }

  function launch(task: ClaimedTask, claimedAt: number): void {
    const rt = runtimes.get(task.target);
    if (!rt) return; // cannot happen: we only claim for targets we know
    rt.gate.occupy();
    gauges(task.target, rt);
    // The target's slot is free once its calls are over; the task stays held (and counted in
    // `running`) until its outcome is written, which happens in batches.
    let vacated = false;
    const callsDone = () => {
      if (vacated) return;
      vacated = true;
      rt.gate.vacate();
      gauges(task.target, rt);
      wake();
    };
    const p = execute(task, claimedAt, rt, callsDone).finally(() => {
      running.delete(p);
      callsDone();
      wake();
    });
    running.add(p);
  }

  async function execute(
    task: ClaimedTask,
    claimedAt: number,
    rt: Runtime,
    callsDone: () => void,
  ): Promise<void> {
    const log = logger.child({ requestId: task.requestId, target: task.target, attempt: task.attempt });
    let result: TaskResult;
    try {
      result = await runTask(task, {
        gate: rt.gate,
        agents: deps.agents,
        secrets: deps.secrets,
        signal: abort.signal,
        now,
        random,
        retryPolicy,
        retryAfterCapMs: o.retryAfterCapMs,
        leaseMarginMs: o.leaseMarginMs,
        claimedAt,
        extendLease: (ms) => extendLease(pool, task, o.owner, ms),
        onCall: (cls, seconds) => {
          metrics.calls.inc({ target: task.target, class: cls });
          metrics.latency.observe({ target: task.target }, seconds);
        },
      });
      callsDone();
    } catch (err) {
      // A bug here must not lose the task: retry it later like any retriable failure.
      log.error('sync task failed unexpectedly; retrying later', { code: 'ERR_SYNC_TASK', error: err });
      result = {
        state: 'retrying',
        kind: 'task.retrying',
        delayMs: computeBackoff(task.attempt, o.backoff, random),
        lastError: 'internal error in the dispatcher; retried',
        journal: { target: task.target, attempt: task.attempt, cause: 'internal_error' },
      };
    }
    const label =
      result.state === 'acked'
        ? result.outcome
        : result.state === 'retrying' && result.kind === 'task.released'
          ? 'released'
          : result.state;
    for (let i = 1; ; i++) {
      try {
        const written = await writer.write({ task, result });
        if (written === 'stale') {
          metrics.outcomes.inc({ target: task.target, outcome: 'stale' });
          log.warn(
            'task changed while it was called (lease ran out and it was retaken, or acked meanwhile); this answer is dropped',
            { code: 'WARN_SYNC_STALE_RESULT' },
          );
          return;
        }
        metrics.outcomes.inc({ target: task.target, outcome: label });
        if (result.state === 'failed') {
          sweepSoon = true;
          log.warn('sync task failed; the request needs attention', {
            code: 'WARN_SYNC_TASK_FAILED',
            cause: result.journal['cause'],
          });
        } else if (result.state === 'handed_back') {
          log.debug('the target gate did not admit the first call in time; task handed back uncalled', {
            cause: result.journal['cause'],
          });
        } else if (result.state === 'retrying' && result.journal['cause'] === 'missing_secret') {
          log.warn('target auth secret is not configured; task retried', {
            code: 'WARN_SYNC_SECRET_MISSING',
          });
        }
        return;
      } catch (err) {
        metrics.loopErrors.inc({ code: 'ERR_SYNC_RECORD' });
        if (i >= RECORD_ATTEMPTS) {
          // The lease runs out and another pass retakes the task: called again, same key.
          log.error('could not record a sync task outcome; it will be retried after its lease', {
            code: 'ERR_SYNC_RECORD',
            error: err,
          });
          return;
        }
        await sleepMs(computeBackoff(i, { initialMs: 200, maxMs: 5000, multiplier: 2 }, random));
      }
    }
  }

  function sleepMs(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
  }

  function pause(ms: number): Promise<void> {
    if (wakeRequested) {
      wakeRequested = false;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeSleep = undefined;
        wakeRequested = false;
        resolve();
      }
      wakeSleep = done;
    });
  }

  function wake(): void {
    if (wakeSleep) wakeSleep();
    else wakeRequested = true;
  }

  // Never throws out: a failed pass is logged with its code, then retried after a backoff.
  async function loop(): Promise<void> {
    let failures = 0;
    while (!stopping) {
      let delayMs: number;
      const passStart = now();
      try {
        delayMs = await pass();
        failures = 0;
      } catch (err) {
        failures += 1;
        metrics.loopErrors.inc({ code: 'ERR_SYNC_LOOP' });
        delayMs = Math.max(o.pollIntervalMs, computeBackoff(failures, o.loopBackoff, random));
        logger.error('sync dispatcher pass failed; retrying', {
          code: 'ERR_SYNC_LOOP',
          attempt: failures,
          error: err,
        });
      }
      const gap = MIN_PASS_GAP_MS - (now() - passStart);
      if (!stopping && gap > 0) await sleepMs(gap);
      if (!stopping) await pause(delayMs);
    }
  }

  return {
    start() {
      loopDone ??= loop();
    },
    wake,
    inFlight: () => running.size,
    async stop() {
      stopping = true;
      wake();
      await loopDone;
      // Calls in flight get the grace period to finish and record their answer ...
      if (running.size > 0 && o.shutdownGraceMs > 0) {
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([
          Promise.allSettled([...running]),
          new Promise((r) => (timer = setTimeout(r, o.shutdownGraceMs))),
        ]);
        clearTimeout(timer);
      }
      // ... then the rest are aborted and released (retrying now, same Idempotency-Key).
      if (running.size > 0) {
        logger.info('aborting sync calls still in flight at shutdown', { tasks: running.size });
        abort.abort();
        await Promise.allSettled([...running]);
      }
    },
  };
}
