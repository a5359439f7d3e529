/**
 * One API worker process (API_WORKERS > 1; cluster.ts forks it). Reads the same environment
 * as the primary, listens on the shared port, and reports to the primary: ready or failed,
 * its metrics when asked. Stops on SIGTERM (the primary's stop sends it); SIGINT is left to
 * the primary, which gets it too from a terminal and stops the workers in order.
 */
import cluster from 'node:cluster';
import { Registry } from 'prom-client';
import { ErasureError } from '../shared/errors.ts';
import { createLogger } from '../shared/logger.ts';
import type { ClusterMessage } from './cluster.ts';
import { loadApiConfig } from './config.ts';
import { start } from './index.ts';

if (!cluster.isWorker || !process.send) {
  process.stderr.write(
    'services/api/worker.ts is started by the API primary (API_WORKERS > 1), not by hand\n',
  );
  process.exit(2);
}
const send = (msg: ClusterMessage) => process.send!(msg);

const registry = new Registry();
const pendingMetrics = new Map<number, { resolve: (text: string) => void; reject: (err: Error) => void }>();
let nextId = 0;

/** The whole process group's metrics, summed by the primary. */
function clusterMetrics(): Promise<string> {
  const id = ++nextId;
  return new Promise((resolve, reject) => {
    pendingMetrics.set(id, { resolve, reject });
    send({ type: 'erasure:metrics-request', id });
  });
}

let api: Awaited<ReturnType<typeof start>> | undefined;
let stopping = false;
/** Stops serving and exits; asked for while starting, it exits once the start is over. */
const stop = () => {
  if (stopping) return;
  stopping = true;
  if (api) void api.stop().finally(() => process.exit(0));
};
process.on('message', (msg: ClusterMessage) => {
  if (msg.type === 'erasure:metrics-collect')
    void registry
      .getMetricsAsJSON()
      .then((metrics) => send({ type: 'erasure:metrics-collected', id: msg.id, metrics }));
  else if (msg.type === 'erasure:metrics-answer') {
    const p = pendingMetrics.get(msg.id);
    pendingMetrics.delete(msg.id);
    if (msg.text !== undefined) p?.resolve(msg.text);
    else p?.reject(new Error(msg.error ?? 'no metrics'));
  }
});
process.on('SIGTERM', stop);
process.on('SIGINT', () => undefined);
// The primary gone (killed): nobody hands out connections or answers /metrics any more.
process.on('disconnect', stop);

try {
  const cfg = loadApiConfig(process.env);
  const logger = createLogger({ service: 'api', level: cfg.logLevel }).child({ worker: cluster.worker!.id });
  api = await start(cfg, logger, { registry, metricsText: clusterMetrics });
  if (stopping) {
    stopping = false;
    stop();
  } else send({ type: 'erasure:api-ready', url: api.url });
} catch (err) {
  const code = err instanceof ErasureError ? err.code : 'ERR_START';
  const message = err instanceof Error ? err.message : String(err);
  if (!process.connected) process.exit(1);
  process.send({ type: 'erasure:api-failed', code, message } satisfies ClusterMessage, undefined, {}, () =>
    process.exit(1),
  );
}
