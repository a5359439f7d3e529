/**
 * One entry point for any subset of services: `tsx services/main.ts api` runs the API;
 * the demo runs all of them in one process, production runs one per process.
 * Exits non-zero with one line when configuration is invalid or a service cannot start (the
 * line names the dependency that failed when the error says which). SIGINT and SIGTERM,
 * handled from before the first start, stop the services in reverse order within
 * SHUTDOWN_TIMEOUT_MS; a stop that fails or overruns exits 1 (service-group.ts).
 *
 * Metrics: every service in the process registers into one registry. The API serves it on
 * its /metrics; a process without the API serves it on METRICS_PORT when that is set.
 */
import { createLogger } from './shared/logger.ts';
import { ConfigurationError, ErasureError } from './shared/errors.ts';
import { collectInfraConfig, intSetting, parseWholeNumber } from './shared/infra-config.ts';
import { logLevelSetting, type LogLevel } from './shared/log-level-setting.ts';
import { dependencyPrefix } from './shared/name-dependency.ts';
import { quietAwsSdkNotice } from './shared/quiet-aws-sdk-notice.ts';
import { serveMetrics } from './shared/serve-metrics.ts';
import { createServiceGroup, type RunningService, type ServiceGroup } from './shared/service-group.ts';
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

export interface ProcessConfig {
  /**
   * SHUTDOWN_TIMEOUT_MS: how long a stop may take in all, 100 to 600 000 ms. Default 30 000
   * (a container orchestrator's usual grace period). Past it the process names the services
   * that did not stop (ERR_SHUTDOWN_TIMEOUT) and exits 1.
   */
  readonly shutdownTimeoutMs: number;
  /** METRICS_PORT: where a process without the API serves /metrics (0 to 65 535); unset, nowhere. */
  readonly metricsPort: number | undefined;
  /** HOST: the metrics listener's interface, default 127.0.0.1 (like the API's). */
  readonly metricsHost: string;
  /** LOG_LEVEL, for the process's own lines (stop failures). */
  readonly logLevel: LogLevel;
}

/** The process's own settings, read once; every problem is reported together. */
export function loadProcessConfig(env: NodeJS.ProcessEnv): ProcessConfig {
  const problems: string[] = [];
  const shutdownTimeoutMs = intSetting(env, problems, 'SHUTDOWN_TIMEOUT_MS', 30_000, 100, 600_000);
  const logLevel = logLevelSetting(env, problems);
  const rawPort = env['METRICS_PORT'];
  const metricsPort = rawPort ? parseWholeNumber(rawPort, 0, 65_535) : undefined;
  if (rawPort && metricsPort === undefined)
    problems.push(`METRICS_PORT must be a port number from 0 to 65535, got "${rawPort.slice(0, 20)}"`);
  if (problems.length > 0) throw new ConfigurationError(problems);
  return Object.freeze({
    shutdownTimeoutMs,
    metricsPort,
    metricsHost: env['HOST'] || '127.0.0.1',
    logLevel,
  });
}

export function createProcessGroup(cfg: ProcessConfig): ServiceGroup {
  return createServiceGroup({
    shutdownTimeoutMs: cfg.shutdownTimeoutMs,
    logger: createLogger({ service: 'main', level: cfg.logLevel }),
  });
}

/**
 * Each service's code is imported when it starts: a process loads only what it runs (one
 * service per process in production starts faster and holds less).
 */
async function startOne(
  name: ServiceName,
  env: NodeJS.ProcessEnv,
  opts: { registry: Registry },
): Promise<RunningService> {
  switch (name) {
    case 'api': {
      const { loadApiConfig } = await import('./api/config.ts');
      const cfg = loadApiConfig(env);
      if (cfg.workers > 1) {
        const { startApiCluster } = await import('./api/cluster.ts');
        return startApiCluster(cfg, createLogger({ service: 'api', level: cfg.logLevel }), opts);
      }
      const { start } = await import('./api/index.ts');
      return start(cfg, undefined, opts);
    }
    case 'journal-sealer': {
      const { loadSealerConfig, start } = await import('./journal-sealer/index.ts');
      return start(loadSealerConfig(env));
    }
    case 'relay': {
      const { loadRelayConfig, start } = await import('./relay/index.ts');
      return start(loadRelayConfig(env), undefined, opts);
    }
    case 'redelivery': {
      const { loadRedeliveryConfig, start } = await import('./redelivery/index.ts');
      return start(loadRedeliveryConfig(env));
    }
    case 'ack-consumer': {
      const { loadAckConsumerConfig, start } = await import('./ack-consumer/index.ts');
      return start(loadAckConsumerConfig(env), undefined, opts);
    }
    case 'sync-dispatcher': {
      const { loadSyncDispatcherConfig, start } = await import('./sync-dispatcher/index.ts');
      return start(loadSyncDispatcherConfig(env), undefined, opts);
    }
    case 'exporter': {
      const { loadExporterConfig, start } = await import('./exporter/index.ts');
      return start(loadExporterConfig(env), undefined, opts);
    }
  }
}

/** A start that failed, with the service it was starting (ERR_START's line names it). */
export class ServiceStartError extends Error {
  constructor(
    readonly serviceName: string,
    cause: unknown,
  ) {
    super(cause instanceof Error ? cause.message : String(cause), { cause });
    this.name = 'ServiceStartError';
  }
}

/**
 * Starts `names` in order, into `group` (a new one from `cfg` when not given). Once the group
 * is stopping (a signal during a slow start) nothing more is started. If a start fails, what
 * has started is stopped and the start's error thrown as a ServiceStartError. `cfg` defaults
 * to the process settings read from `env`.
 */
export async function startServices(
  names: readonly ServiceName[],
  env: NodeJS.ProcessEnv,
  group?: ServiceGroup,
  cfg: ProcessConfig = loadProcessConfig(env),
): Promise<RunningService[]> {
  group ??= createProcessGroup(cfg);
  const registry = new Registry();
  const opts = { registry };
  let current = 'metrics';
  try {
    if (!names.includes('api')) {
      // Without the API, nobody else collects the process metrics or serves them.
      collectDefaultMetrics({ register: registry, prefix: 'erasure_' });
      const port = cfg.metricsPort;
      if (port !== undefined) await group.add('metrics', () => serveMetrics(registry, port, cfg.metricsHost));
    }
    for (const name of names) {
      if (group.stopping()) break;
      current = name;
      await group.add(name, () => startOne(name, env, opts));
    }
  } catch (err) {
    await group.stop();
    throw new ServiceStartError(current, err);
  }
  return group.running();
}

/**
 * Calls `stop` on the first SIGINT or SIGTERM (it stops the group and exits); a second signal
 * exits at once (130). Install it before the first start, so a signal during a slow start
 * stops what has started.
 */
export function handleSignals(stop: () => Promise<void>): void {
  let stopping = false;
  const onSignal = () => {
    if (stopping) process.exit(130);
    stopping = true;
    void stop();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

/** Exit after the event loop's next turn, so log lines written just before reach stdout. */
const exitSoon = (code: number): void => {
  setImmediate(() => process.exit(code));
};

/** `erasure: ERR_START: relay could not start: Kafka (check KAFKA_BROKERS): Connection error: ...` */
export function startFailureLine(err: unknown, env: NodeJS.ProcessEnv): string {
  const service = err instanceof ServiceStartError ? err.serviceName : undefined;
  const cause = err instanceof ServiceStartError ? err.cause : err;
  const code = cause instanceof ErasureError ? cause.code : 'ERR_START';
  const message = cause instanceof Error ? cause.message : String(cause);
  if (cause instanceof ConfigurationError) return `erasure: ${code}: ${message}`;
  const what = service ? `${service} could not start: ` : '';
  return `erasure: ${code}: ${what}${dependencyPrefix(cause, collectInfraConfig(env, []))}${message}`;
}

const isMain = import.meta.url === `file://${process.argv[1]}`;
if (isMain) {
  // Before any AWS SDK client exists (the exporter's, created by its start).
  quietAwsSdkNotice(process.env);
  const wanted = (process.argv.slice(2).length > 0 ? process.argv.slice(2) : [...SERVICES]) as ServiceName[];
  const unknown = wanted.filter((n) => !SERVICES.includes(n));
  if (unknown.length > 0) {
    process.stderr.write(
      `erasure: unknown service(s) ${unknown.join(', ')}; services are ${SERVICES.join(', ')}\n`,
    );
    process.exit(2);
  }
  let cfg: ProcessConfig;
  try {
    cfg = loadProcessConfig(process.env);
  } catch (err) {
    process.stderr.write(`${startFailureLine(err, process.env)}\n`);
    process.exit(1);
  }
  const group = createProcessGroup(cfg);
  let startFailed = false;
  // Before anything starts: a signal during a slow start (a dependency that does not
  // answer) stops what has started, and what is starting once it has.
  handleSignals(() => group.stop().then((r) => exitSoon(r.ok && !startFailed ? 0 : 1)));
  startServices(wanted, process.env, group, cfg).catch((err: unknown) => {
    startFailed = true;
    process.stderr.write(`${startFailureLine(err, process.env)}\n`);
    // startServices has stopped what had started (bounded by SHUTDOWN_TIMEOUT_MS); when a
    // signal is stopping the group, its handler exits.
    void group.stop().then(() => exitSoon(1));
  });
}
