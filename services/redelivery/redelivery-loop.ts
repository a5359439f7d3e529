import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { computeBackoff, type BackoffPolicy } from '../shared/compute-backoff.ts';
import type { Logger } from '../shared/logger.ts';
import { claimLateTasks } from './claim-late-tasks.ts';
import { failSilentTasks, type GiveUp } from './fail-silent-tasks.ts';
import { giveUpMessage, planRedelivery, type RedeliveryPolicy } from './plan-redelivery.ts';
import { writeRedeliveries, type Redelivery } from './write-redeliveries.ts';

/** Journal actor of redeliveries and give-ups. */
export const REDELIVERY_ACTOR = 'redelivery';

export interface RedeliveryOptions extends RedeliveryPolicy {
  /** Pause between passes when there was nothing (more) to do, in milliseconds. */
  readonly intervalMs: number;
  /** Most tasks claimed per pass (one transaction). */
  readonly batchSize: number;
  /** Wait after a failed pass, growing with consecutive failures. */
  readonly loopBackoff: BackoffPolicy;
}

export interface RedeliveryDeps {
  readonly pool: pg.Pool;
  readonly logger: Logger;
  readonly options: RedeliveryOptions;
  /** [0, 1) source for backoff jitter; injected so tests are deterministic. */
  readonly random?: () => number;
  /** eventId of each redelivery; injected so tests can name them. */
  readonly newEventId?: () => string;
}

export interface PassResult {
  /** Late tasks claimed (locked) in this pass. */
  readonly claimed: number;
  readonly redelivered: number;
  /** Tasks that ran out of deliveries and are now failed. */
  readonly failed: number;
  /** Give-ups whose request was busy (an ack settling it); retried next pass. */
  readonly deferred: number;
}

export interface RedeliveryLoop {
  /** One claim → redeliver / give up pass in one transaction. Throws when the database fails. */
  runOnce(): Promise<PassResult>;
  start(): void;
  /** Lets the pass in flight finish, then ends the loop. */
  stop(): Promise<void>;
}

export function createRedeliveryLoop(deps: RedeliveryDeps): RedeliveryLoop {
  const { pool, options } = deps;
  const logger = deps.logger.child({ component: 'redelivery' });
  const random = deps.random ?? Math.random;
  const newEventId = deps.newEventId ?? randomUUID;

  async function runOnce(): Promise<PassResult> {
    const client = await pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const late = await claimLateTasks(client, options.batchSize);
      const redeliveries: Redelivery[] = [];
      const giveUps: GiveUp[] = [];
      for (const task of late) {
        if (task.originalId === null) {
          // Nothing to copy: say so on the task rather than skip it on every pass forever.
          giveUps.push({
            requestId: task.requestId,
            target: task.target,
            reason: `${giveUpMessage(task.deliveries)}; the original event is gone, so it cannot be redelivered`,
            cause: 'original_event_missing',
          });
          continue;
        }
        const plan = planRedelivery(task, options, random);
        if (plan.kind === 'give_up') {
          giveUps.push({
            requestId: task.requestId,
            target: task.target,
            reason: giveUpMessage(plan.deliveries),
            cause: 'no_acknowledgement',
          });
        } else {
          redeliveries.push({
            requestId: task.requestId,
            target: task.target,
            originalId: task.originalId,
            eventId: newEventId(),
            nextInMs: plan.nextInMs,
          });
        }
      }
      const redelivered = await writeRedeliveries(client, redeliveries, REDELIVERY_ACTOR);
      const { failed, deferred } = await failSilentTasks(client, giveUps, REDELIVERY_ACTOR);
      await client.query('COMMIT');
      if (redelivered > 0) logger.info('late targets sent their event again', { tasks: redelivered });
      if (failed > 0) {
        // Targets by name only; which requests is in the journal, never identifiers here.
        logger.warn('targets never acknowledged; tasks failed for a person to act on', {
          code: 'ERR_REDELIVERY_EXHAUSTED',
          tasks: failed,
          targets: [...new Set(giveUps.map((g) => g.target))],
        });
      }
      return { claimed: late.length, redelivered, failed, deferred };
    } catch (err) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      throw err;
    } finally {
      client.release(broken);
    }
  }

  let running: Promise<void> | undefined;
  let stopping = false;
  let wakeSleep: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wakeSleep = undefined;
        resolve();
      }
      wakeSleep = done;
    });

  // Never throws out: a failed pass is logged with its code, then retried after a backoff.
  async function loop(): Promise<void> {
    let failures = 0;
    while (!stopping) {
      let delayMs = options.intervalMs;
      try {
        const pass = await runOnce();
        failures = 0;
        // A full batch means more may be due: go again at once rather than fall behind.
        if (pass.claimed >= options.batchSize && pass.deferred < pass.claimed) delayMs = 0;
      } catch (err) {
        failures += 1;
        delayMs = Math.max(options.intervalMs, computeBackoff(failures, options.loopBackoff, random));
        logger.error('redelivery pass failed; retrying', {
          code: 'ERR_REDELIVERY_PASS',
          attempt: failures,
          error: err,
        });
      }
      if (!stopping && delayMs > 0) await pause(delayMs);
    }
  }

  return {
    runOnce,
    start() {
      if (!running) running = loop();
    },
    async stop() {
      stopping = true;
      wakeSleep?.();
      await running;
    },
  };
}
