/**
 * Stack benchmark: cold `stack:up` (empty Maven repository, empty stack directory),
 * warm `stack:up` (everything fetched, processes stopped), `stack:up` with everything
 * already running, and the stack's memory when idle.
 *
 * It runs a second, separate stack (its own directory under .stack/bench, ports shifted by
 * STACK_PORT_OFFSET=2000), so the development stack is left alone, and removes it after.
 * Options: --keep-maven-repo (skip the cold download), --idle-seconds=N (default 20).
 */
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { spawnSync } from 'node:child_process';
import { loadStackConfig, REPO_ROOT } from '../stack/stack-config.ts';
import { createParts, PART_NAMES, stackDown, stackUp } from '../stack/stack.ts';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

const args = process.argv.slice(2);
const idleSeconds = Number(args.find((a) => a.startsWith('--idle-seconds='))?.split('=')[1] ?? 20);
const benchDir = join(REPO_ROOT, '.stack', 'bench');
const mavenRepo = join(benchDir, 'm2');
const stackDir = join(benchDir, 'stack');

const env: NodeJS.ProcessEnv = {
  ...process.env,
  ERASURE_STACK_DIR: stackDir,
  STACK_PORT_OFFSET: '2000',
  STACK_MAVEN_REPO: mavenRepo,
  DATABASE_URL: '',
  KAFKA_BROKERS: '',
  SCHEMA_REGISTRY_URL: '',
  S3_ENDPOINT: '',
};

function kib(pid: number, field: 'Rss' | 'Pss'): number {
  try {
    const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

/** The process and all its descendants (PostgreSQL's workers each start their own session). */
function treePids(leader: number): number[] {
  const out = [leader];
  for (let i = 0; i < out.length; i++) {
    const res = spawnSync('ps', ['-o', 'pid=', '--ppid', String(out[i])], { encoding: 'utf8' });
    out.push(
      ...res.stdout
        .split('\n')
        .map((l) => Number(l.trim()))
        .filter((p) => p > 0),
    );
  }
  return out;
}

async function timedUp(label: string): Promise<number> {
  const cfg = loadStackConfig(env);
  const t0 = Date.now();
  const { failures } = await stackUp(cfg, PART_NAMES, (l) => process.stderr.write(`  ${label}: ${l}\n`));
  const s = (Date.now() - t0) / 1000;
  if (failures.length > 0) {
    for (const f of failures) process.stderr.write(`bench: FAILED ${f.line(process.cwd())}\n`);
    await stackDown(cfg, () => undefined);
    process.exit(1);
  }
  return s;
}

async function main(): Promise<void> {
  const keepRepo = args.includes('--keep-maven-repo');
  rmSync(stackDir, { recursive: true, force: true });
  if (!keepRepo) rmSync(mavenRepo, { recursive: true, force: true });
  mkdirSync(benchDir, { recursive: true });

  process.stderr.write(
    `bench: cold stack:up (${keepRepo ? 'Maven repo kept' : 'empty Maven repository'}) ...\n`,
  );
  const cold = await timedUp('cold');
  const cfg = loadStackConfig(env);

  process.stderr.write(`bench: idle for ${idleSeconds} s, then measuring memory ...\n`);
  await sleep(idleSeconds * 1000);
  const rows: string[] = [];
  let rss = 0;
  let pss = 0;
  for (const part of createParts(cfg).values()) {
    const pids = part.running().flatMap(treePids);
    const r = pids.reduce((a, p) => a + kib(p, 'Rss'), 0);
    const s = pids.reduce((a, p) => a + kib(p, 'Pss'), 0);
    rss += r;
    pss += s;
    rows.push(
      `  ${part.name.padEnd(9)} ${String(pids.length).padStart(3)} procs  RSS ${(r / 1024).toFixed(0).padStart(5)} MiB  PSS ${(s / 1024).toFixed(0).padStart(5)} MiB`,
    );
  }

  const running = await timedUp('running');
  await stackDown(cfg, () => undefined);
  const warm = await timedUp('warm');
  await stackDown(cfg, () => undefined);

  const repoSize = spawnSync('du', ['-sm', mavenRepo], { encoding: 'utf8' }).stdout.split('\t')[0];
  process.stdout.write(
    [
      '',
      'stack benchmark (2-core machine figures go in the README)',
      `  cold stack:up (${keepRepo ? 'Maven repo kept' : `empty Maven repo, ${repoSize} MiB fetched`}, empty stack dir):  ${cold.toFixed(1)} s`,
      `  warm stack:up (fetched, processes stopped):         ${warm.toFixed(1)} s   goal < 45 s`,
      `  stack:up with everything running (probes only):     ${running.toFixed(1)} s`,
      `  idle memory after ${idleSeconds} s:`,
      ...rows,
      `  total     RSS ${(rss / 1024).toFixed(0)} MiB (${(rss / 1048576).toFixed(2)} GiB)  PSS ${(pss / 1024).toFixed(0)} MiB   goal RSS < 2.5 GiB`,
      '',
    ].join('\n'),
  );
  rmSync(stackDir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
