/**
 * API_WORKERS > 1: the API runs in that many worker processes sharing one port (node:cluster;
 * the primary accepts connections and hands them out round-robin), so HTTP parsing,
 * validation and JSON use every core instead of one. The process that called
 * startApiCluster is the primary: it serves no HTTP itself, supervises the workers
 * (a worker that dies is started again) and answers their /metrics with the sum over every
 * worker and its own registry (the other services of the process), so a scrape of any
 * worker sees the whole process group.
 *
 * Per process, and so divided or multiplied by the workers (README, "Scaling the API"):
 * each worker gets RATE_LIMIT_PER_SECOND / API_WORKERS per token (connections are spread
 * evenly; a client on a single connection reaches only one worker's share), DB_POOL_SIZE
 * connections, its own token and identifier-type caches.
 */
import cluster, { type Worker } from 'node:cluster';
import { fileURLToPath } from 'node:url';
import { AggregatorRegistry, type Registry } from 'prom-client';
import { ErasureError } from '../shared/errors.ts';
import type { Logger } from '../shared/logger.ts';
import type { RunningService } from '../shared/service-group.ts';
import type { ApiConfig } from './config.ts';

/** One registry's metrics as JSON, as prom-client's cluster aggregation takes them. */
type MetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

const WORKER_ENTRY = fileURLToPath(new URL('./worker.ts', import.meta.url));

/** Messages between the primary and its API workers (node:cluster IPC, JSON). */
export type ClusterMessage =
  | { type: 'erasure:api-ready'; url: string }
  | { type: 'erasure:api-failed'; code: string; message: string }
  /** worker → primary: a /metrics request; primary → worker: the answer. */
  | { type: 'erasure:metrics-request'; id: number }
  | { type: 'erasure:metrics-answer'; id: number; text?: string; error?: string }
  /** primary → worker: send your registry; worker → primary: here it is. */
  | { type: 'erasure:metrics-collect'; id: number }
  | { type: 'erasure:metrics-collected'; id: number; metrics: MetricsJson };

/** How long the primary waits for a worker's metrics, a start, a stop. */
const COLLECT_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 30_000;
/** A worker that dies is started again after this pause, doubled while restarts keep failing. */
const RESTART_DELAYS_MS = [500, 1_000, 2_000, 5_000, 10_000] as const;

export async function startApiCluster(
  cfg: ApiConfig,
  logger: Logger,
  opts: { registry?: Registry } = {},
): Promise<RunningService> {
  if (!cluster.isPrimary) throw new Error('startApiCluster runs in the primary process only');
  cluster.setupPrimary({ exec: WORKER_ENTRY, execArgv: process.execArgv });
  const workers = new Set<Worker>();
  let stopping = false;
  let restarts = 0;
  let collectId = 0;
  const collecting = new Map<number, { pending: Set<Worker>; got: MetricsJson[]; done: () => void }>();

  /** Every worker's registry and the primary's own, summed (prom-client's cluster aggregation). */
  async function clusterMetrics(): Promise<string> {
    const id = ++collectId;
    const got: MetricsJson[] = opts.registry ? [await opts.registry.getMetricsAsJSON()] : [];
    const pending = new Set([...workers].filter((w) => w.isConnected()));
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, COLLECT_TIMEOUT_MS); // a hung worker is left out
      collecting.set(id, { pending, got, done: () => (clearTimeout(timer), resolve()) });
      for (const w of pending) w.send({ type: 'erasure:metrics-collect', id } satisfies ClusterMessage);
      if (pending.size === 0) collecting.get(id)!.done();
    });
    collecting.delete(id);
    return AggregatorRegistry.aggregate(got).metrics();
  }

  function onMessage(worker: Worker, msg: ClusterMessage): void {
    if (msg.type === 'erasure:metrics-collected') {
      const c = collecting.get(msg.id);
      if (!c || !c.pending.delete(worker)) return;
      c.got.push(msg.metrics);
      if (c.pending.size === 0) c.done();
    } else if (msg.type === 'erasure:metrics-request') {
      clusterMetrics().then(
        (text) => worker.send({ type: 'erasure:metrics-answer', id: msg.id, text } satisfies ClusterMessage),
        (err: Error) =>
          worker.send({
            type: 'erasure:metrics-answer',
            id: msg.id,
            error: err.message,
          } satisfies ClusterMessage),
      );
    }
  }

  const nextDelay = () => RESTART_DELAYS_MS[Math.min(restarts, RESTART_DELAYS_MS.length - 1)]!;
  /** The pending restart, if any; stop() clears it. */
  let restartTimer: NodeJS.Timeout | undefined;
  /** Starts a replacement after a pause; while replacements fail, keeps trying, slower. */
  function replace(): void {
    const delay = nextDelay();
    restarts++;
    // Not unref'd: with every worker gone, this timer is what keeps the primary alive.
    restartTimer = setTimeout(() => {
      restartTimer = undefined;
      if (stopping) return;
      fork().then(
        () => (restarts = 0),
        (err: Error) => {
          logger.error('API worker failed to start; trying again', {
            code: 'ERR_API_WORKER_START',
            error: err,
            restartInMs: nextDelay(),
          });
          if (!stopping) replace();
        },
      );
    }, delay);
  }

  /** Forks one worker; resolves with its URL once it listens, rejects if it fails first. */
  function fork(): Promise<string> {
    const worker = cluster.fork();
    workers.add(worker);
    return new Promise<string>((resolve, reject) => {
      let ready = false;
      const timer = setTimeout(() => {
        worker.process.kill('SIGKILL');
        reject(
          new ErasureError(
            'ERR_API_WORKER_START',
            `an API worker did not listen within ${START_TIMEOUT_MS / 1000} s`,
          ),
        );
      }, START_TIMEOUT_MS);
      worker.on('message', (msg: ClusterMessage) => {
        if (msg.type === 'erasure:api-ready') {
          ready = true;
          clearTimeout(timer);
          resolve(msg.url);
        } else if (msg.type === 'erasure:api-failed') {
          clearTimeout(timer);
          reject(new ErasureError(msg.code, msg.message));
        } else onMessage(worker, msg);
      });
      worker.once('exit', (code, signal) => {
        workers.delete(worker);
        for (const [, c] of collecting) if (c.pending.delete(worker) && c.pending.size === 0) c.done();
        if (!ready) {
          clearTimeout(timer);
          reject(
            new ErasureError(
              'ERR_API_WORKER_START',
              `an API worker exited (${signal ?? code}) before listening`,
            ),
          );
          return;
        }
        if (stopping) return;
        // Died while serving: its connections are gone (clients retry with the same
        // Idempotency-Key); the others keep serving while a new one starts.
        logger.error('API worker exited; starting another', {
          code: 'ERR_API_WORKER_EXIT',
          exitCode: code,
          signal,
          restartInMs: nextDelay(),
        });
        replace();
      });
    });
  }

  async function stopAll(): Promise<void> {
    stopping = true;
    clearTimeout(restartTimer);
    await Promise.all(
      [...workers].map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            const kill = setTimeout(() => w.process.kill('SIGKILL'), STOP_TIMEOUT_MS);
            w.once('exit', () => (clearTimeout(kill), resolve()));
            // A signal, not a message: a worker still loading has no message handler yet.
            w.process.kill('SIGTERM');
          }),
      ),
    );
  }

  let url: string;
  try {
    const urls = await Promise.all(Array.from({ length: cfg.workers }, () => fork()));
    url = urls[0]!;
  } catch (err) {
    await stopAll();
    throw err;
  }
  logger.info('api workers listening', { url, workers: cfg.workers });
  return {
    url,
    async stop() {
      await stopAll();
      logger.info('api workers stopped');
    },
  };
}
