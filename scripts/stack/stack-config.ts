import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  collectInfraConfig,
  ConfigError,
  localPorts,
  type InfraConfig,
} from '../../services/shared/infra-config.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Everything the stack scripts need, read once from the environment and frozen. */
export interface StackConfig {
  readonly repoRoot: string;
  /** Data, logs, pid files and unpacked distributions. Default: <repo>/.stack (git-ignored). */
  readonly stackDir: string;
  readonly logsDir: string;
  readonly runDir: string;
  readonly dataDir: string;
  readonly infra: InfraConfig;
  readonly ports: ReturnType<typeof localPorts>;
  /** 1 (default) or 3: three KRaft nodes, replication factor 3, min.insync.replicas=2. */
  readonly kafkaNodes: 1 | 3;
  /** Local Maven repository; default ~/.m2/repository (Maven's own default). */
  readonly mavenRepo: string | undefined;
  /** STACK_MAVEN_OFFLINE=1: never reach a remote repository (air-gapped machines, tests). */
  readonly mavenOffline: boolean;
  /** Upper bound for one part to become healthy once started. */
  readonly startTimeoutMs: number;
  /** Upper bound for fetching one part through Maven or apt-get. */
  readonly fetchTimeoutMs: number;
}

export function loadStackConfig(env: NodeJS.ProcessEnv, argv: string[] = []): StackConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const ports = localPorts(env); // its problems are already reported by loadInfraConfig

  const nodesArg = argv.find((a) => a.startsWith('--kafka-nodes='))?.split('=')[1];
  const nodesRaw = nodesArg ?? env['STACK_KAFKA_NODES'] ?? '1';
  if (nodesRaw !== '1' && nodesRaw !== '3') problems.push('STACK_KAFKA_NODES (--kafka-nodes) must be 1 or 3');

  const num = (name: string, dflt: number) => {
    const raw = env[name];
    const v = raw === undefined || raw === '' ? dflt : Number(raw);
    if (!Number.isFinite(v) || v <= 0) problems.push(`${name} must be a positive number of milliseconds`);
    return v;
  };
  const startTimeoutMs = num('STACK_START_TIMEOUT_MS', 180_000);
  const fetchTimeoutMs = num('STACK_FETCH_TIMEOUT_MS', 20 * 60_000);

  if (problems.length > 0 || infra === undefined) throw new ConfigError(problems);
  const stackDir = resolve(env['ERASURE_STACK_DIR'] || join(REPO_ROOT, '.stack'));
  return Object.freeze({
    repoRoot: REPO_ROOT,
    stackDir,
    logsDir: join(stackDir, 'logs'),
    runDir: join(stackDir, 'run'),
    dataDir: join(stackDir, 'data'),
    infra,
    ports,
    kafkaNodes: nodesRaw === '3' ? 3 : 1,
    mavenRepo: env['STACK_MAVEN_REPO'] ? resolve(env['STACK_MAVEN_REPO']) : undefined, // Maven may run elsewhere
    mavenOffline: env['STACK_MAVEN_OFFLINE'] === '1',
    startTimeoutMs,
    fetchTimeoutMs,
  });
}
