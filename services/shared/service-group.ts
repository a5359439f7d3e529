/**
 * The services one process runs, for starting and stopping them together. Stopping is
 * bounded: a service whose stop() hangs (a dependency that accepts connections and never
 * answers) is named in ERR_SHUTDOWN_TIMEOUT once the deadline passes, instead of holding the
 * process past its orchestrator's patience; a stop() that throws is logged (ERR_STOP), never
 * swallowed. Both make the process exit non-zero (services/main.ts).
 */
import type { Logger } from './logger.ts';

export interface RunningService {
  /** Where it listens or writes (for logs and the demo). */
  url: string;
  stop(): Promise<void>;
}

export interface StopReport {
  /** True when every service stopped, without error, before the deadline. */
  readonly ok: boolean;
  /** Services whose stop() threw. */
  readonly failed: readonly string[];
  /** Services that had not stopped (or not finished starting) at the deadline. */
  readonly pending: readonly string[];
}

export interface ServiceGroupOptions {
  /** How long stop() waits for every service, ms (SHUTDOWN_TIMEOUT_MS). */
  readonly shutdownTimeoutMs: number;
  readonly logger: Logger;
}

export interface ServiceGroup {
  /**
   * Runs `start` unless the group is stopping, and keeps what it returns. A service that
   * finishes starting after stop() began is stopped at once; add then resolves undefined.
   */
  add<T extends RunningService>(name: string, start: () => Promise<T>): Promise<T | undefined>;
  /** The services started, in order of start. */
  running(): RunningService[];
  stopping(): boolean;
  /**
   * Stops every service, the last started first; then any still starting once it has. Settles
   * when all have, or at the deadline, whichever is first. Called again, returns the same.
   */
  stop(): Promise<StopReport>;
}

export function createServiceGroup(opts: ServiceGroupOptions): ServiceGroup {
  const { logger } = opts;
  const started: { name: string; service: RunningService }[] = [];
  /** Services whose start() has not settled yet. */
  const starting = new Set<string>();
  /** Every add() in progress, start and (when stopping meanwhile) stop included. */
  const runs = new Set<Promise<void>>();
  const failed: string[] = [];
  const pending = new Set<string>();
  let stopped: Promise<StopReport> | undefined;

  const stopOne = async (name: string, service: RunningService) => {
    pending.add(name);
    try {
      await service.stop();
    } catch (err) {
      failed.push(name);
      logger.error('service failed to stop', { code: 'ERR_STOP', serviceName: name, error: err });
    } finally {
      pending.delete(name);
    }
  };

  return {
    add(name, start) {
      if (stopped) return Promise.resolve(undefined);
      pending.add(name);
      starting.add(name);
      const run = (async () => {
        let service;
        try {
          service = await start();
        } finally {
          pending.delete(name);
          starting.delete(name);
        }
        if (stopped) {
          await stopOne(name, service);
          return undefined;
        }
        started.push({ name, service });
        return service;
      })();
      // stop() waits for this whole run: the start, then the stop it does itself.
      const settled = run.then(
        () => undefined,
        () => undefined,
      );
      runs.add(settled);
      void settled.then(() => runs.delete(settled));
      return run;
    },
    running: () => started.map((s) => s.service),
    stopping: () => stopped !== undefined,
    stop() {
      stopped ??= (async () => {
        const all = (async () => {
          for (const { name, service } of [...started].reverse()) await stopOne(name, service);
          // Each add stops its own service once its start settles (it sees `stopped`).
          await Promise.all([...runs]);
        })();
        let timer: NodeJS.Timeout | undefined;
        const deadline = new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), opts.shutdownTimeoutMs);
        });
        const outcome = await Promise.race([all.then(() => 'done' as const), deadline]);
        clearTimeout(timer);
        const late =
          outcome === 'timeout'
            ? [...pending].map((n) => (starting.has(n) ? `${n} (still starting)` : n))
            : [];
        if (late.length > 0)
          logger.error('services did not stop within SHUTDOWN_TIMEOUT_MS; exiting without them', {
            code: 'ERR_SHUTDOWN_TIMEOUT',
            services: late,
            shutdownTimeoutMs: opts.shutdownTimeoutMs,
          });
        return Object.freeze({
          ok: failed.length === 0 && late.length === 0,
          failed: [...failed],
          pending: late,
        });
      })();
      return stopped;
    },
  };
}
