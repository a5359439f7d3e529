/**
 * One entry point for any subset of services: `tsx services/main.ts api` runs the API;
 * the demo runs all of them in one process, production runs one per process.
 * Exits non-zero with one line when configuration is invalid.
 *
 * Metrics: every service in the process registers into one registry. The API serves it on
 * its /metrics; a process without the API serves it on METRICS_PORT when that is set.
 */
import { loadApiConfig } from './api/config.ts';
import { start as startApi, type RunningService } from './api/index.ts';
import { startApiCluster } from './api/cluster.ts';
import { createLogger } from './shared/logger.ts';
import { loadSealerConfig, start as startSealer } from './journal-sealer/index.ts';
import { loadAckConsumerConfig, start as startAckConsumer } from './ack-consumer/index.ts';
import { loadRelayConfig, start as startRelay } from './relay/index.ts';
import { loadRedeliveryConfig, start as startRedelivery } from './redelivery/index.ts';
import { loadSyncDispatcherConfig, start as startSyncDispatcher } from './sync-dispatcher/index.ts';
import { loadExporterConfig, start as startExporter } from './exporter/index.ts';
import { ErasureError } from './shared/errors.ts';
import { serveMetrics } from './shared/serve-metrics.ts';
import { collectDefaultMetrics, Registry } from 'prom-client';

export const SERVICES = [
  'api',
  'journal-sealer',
  'relay',
  'ack-consumer',
  'redelivery',
  'sync-dispatcher',
  'exporter',
] as const;
export type ServiceName = (typeof SERVICES)[number];

export async function startServices(
  names: readonly ServiceName[],
  env: NodeJS.ProcessEnv,
): Promise<RunningService[]> {
  const running: RunningService[] = [];
  const registry = new Registry();
  const opts = { registry };
  try {
    if (!names.includes('api')) {
      // Without the API, nobody else collects the process metrics or serves them.
      collectDefaultMetrics({ register: registry, prefix: 'erasure_' });
      const port = env['METRICS_PORT'];
      if (port) running.push(await serveMetrics(registry, port, env['HOST'] || '0.0.0.0'));
    }
    for (const name of names) {
      if (name === 'api') {
        const cfg = loadApiConfig(env);
        running.push(
          cfg.workers > 1
            ? await startApiCluster(cfg, createLogger({ service: 'api', level: cfg.logLevel }), opts)
            : await startApi(cfg, undefined, opts),
        );
      }
      if (name === 'journal-sealer') running.push(await startSealer(loadSealerConfig(env)));
      if (name === 'relay') running.push(await startRelay(loadRelayConfig(env), undefined, opts));
      if (name === 'redelivery') running.push(await startRedelivery(loadRedeliveryConfig(env)));
      if (name === 'ack-consumer')
        running.push(await startAckConsumer(loadAckConsumerConfig(env), undefined, opts));
      if (name === 'sync-dispatcher')
        running.push(await startSyncDispatcher(loadSyncDispatcherConfig(env), undefined, opts));
      if (name === 'exporter') running.push(await startExporter(loadExporterConfig(env), undefined, opts));
    }
  } catch (err) {
    for (const r of running.reverse()) await r.stop().catch(() => undefined);
    throw err;
  }
  return running;
}

/** Stops services in reverse order of start; a second signal exits at once. */
export function stopOnSignal(running: RunningService[], onStopped: () => void = () => process.exit(0)): void {
  let stopping = false;
  const stop = async () => {
    if (stopping) process.exit(130);
    stopping = true;
    for (const r of [...running].reverse()) await r.stop().catch(() => undefined);
    onStopped();
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  const wanted = (process.argv.slice(2).length > 0 ? process.argv.slice(2) : [...SERVICES]) as ServiceName[];
  const unknown = wanted.filter((n) => !SERVICES.includes(n));
  if (unknown.length > 0) {
    process.stderr.write(
      `erasure: unknown service(s) ${unknown.join(', ')}; services are ${SERVICES.join(', ')}\n`,
    );
    process.exit(2);
  }
  startServices(wanted, process.env).then(
    (running) => stopOnSignal(running),
    (err: unknown) => {
      const code = err instanceof ErasureError ? err.code : 'ERR_START';
      process.stderr.write(`erasure: ${code}: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    },
  );
}
