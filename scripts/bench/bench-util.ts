/** What every benchmark script shares: its options, progress lines and child processes. */
import { availableParallelism } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { join } from 'node:path';
import { loadStackConfig } from '../stack/stack-config.ts';

/** A progress line on stderr (figures go to stdout). */
export function step(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** `--name=N` from the command line, a whole number ≥ min (default 1); exits 2 otherwise. */
export function flag(name: string, dflt: number, min = 1): number {
  const raw = process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];
  const v = raw === undefined ? dflt : Number(raw);
  if (!Number.isInteger(v) || v < min) {
    step(`--${name} must be a whole number of at least ${min}`);
    process.exit(2);
  }
  return v;
}

/** SIGTERM, then SIGKILL after 10 s; resolves once the child has exited. */
export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const killed = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
  if (!killed) {
    child.kill('SIGKILL');
    await exited;
  }
}

/** Whether the query returns a row; the database stops at the first one. */
export async function exists(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<boolean> {
  return (await pool.query<{ e: boolean }>(`SELECT EXISTS (${sql}) AS e`, params)).rows[0]!.e;
}

/** The number in column `n` of a one-row query. */
export async function scalar(pool: pg.Pool, sql: string, params: unknown[] = []): Promise<number> {
  return Number((await pool.query(sql, params)).rows[0].n);
}

// ---------------------------------------------------------------- CPU accounting (/proc)

/** Linux USER_HZ: /proc CPU times are in hundredths of a second. */
export const CLK_TCK = 100;

/** utime+stime (and cutime+cstime: children waited for) of a process, in ticks. */
export function procTicks(
  pid: number,
): { self: number; children: number; ppid: number; comm: string } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name may hold spaces: fields are counted from after its ')'.
    const close = stat.lastIndexOf(')');
    const f = stat.slice(close + 2).split(' ');
    return {
      self: Number(f[11]) + Number(f[12]),
      children: Number(f[13]) + Number(f[14]),
      ppid: Number(f[1]),
      comm: stat.slice(stat.indexOf('(') + 1, close),
    };
  } catch {
    return undefined;
  }
}

function livePids(): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number);
}

/**
 * All PostgreSQL processes (the machine's one server; other databases' sessions count too),
 * plus what the postmaster reaped: a backend that exits mid-phase keeps its CPU counted.
 */
export function postgresTicks(): number {
  let total = 0;
  for (const pid of livePids()) {
    const p = procTicks(pid);
    if (p?.comm !== 'postgres') continue;
    total += p.self;
    if (procTicks(p.ppid)?.comm !== 'postgres') total += p.children;
  }
  return total;
}

/** A process and its direct children (an API primary and its cluster workers), in ticks. */
export function treeTicks(pid: number): number {
  let total = procTicks(pid)?.self ?? 0;
  for (const child of livePids()) {
    const p = procTicks(child);
    if (p?.ppid === pid) total += p.self;
  }
  return total;
}

/** Ticks the whole machine was busy (all cores), from /proc/stat. */
export function machineBusyTicks(): number {
  const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = (cpu[3] ?? 0) + (cpu[4] ?? 0);
  return cpu.slice(0, 8).reduce((a, b) => a + b, 0) - idle;
}

/**
 * CPU ticks the local stack's servers used so far, by the pid files `npm run stack:up`
 * writes (kafka-1, registry, s3; PostgreSQL is postgresTicks). A server not started by this
 * repo's scripts (an existing Kafka, say) is missing from the answer. Diff two readings.
 */
export function stackTicks(): Record<string, number> {
  const out: Record<string, number> = {};
  const run = loadStackConfig(process.env).runDir;
  for (const file of existsSync(run) ? readdirSync(run) : []) {
    if (!file.endsWith('.pid') || file === 'postgres.pid') continue;
    const pid = Number(readFileSync(join(run, file), 'utf8').trim());
    const t = procTicks(pid);
    if (t) out[file.slice(0, -4)] = t.self;
  }
  return out;
}

/**
 * The most items a second this machine's cores allow when each costs `cpuUs` µs of CPU,
 * every core busy with nothing else: the bound the benches' floors print.
 */
export function mostPerSecond(cpuUs: number): number {
  return (availableParallelism() * 1e6) / cpuUs;
}
