/** What every benchmark script shares: its options, progress lines and child processes. */
import type { ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type pg from 'pg';
import { join, resolve } from 'node:path';
import { REPO_ROOT } from '../stack/stack-config.ts';

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

/**
 * CPU seconds (user + system) the local stack's servers used so far, read from /proc by the
 * pid files `npm run stack:up` writes; a server not started by this repo's scripts (an
 * existing Kafka, say) is missing from the answer. Diff two readings for a phase.
 */
export function stackCpuSeconds(): Record<string, number> {
  const out: Record<string, number> = {};
  // Same directory as stack-config.ts's runDir (ERASURE_STACK_DIR moves it).
  const run = join(resolve(process.env['ERASURE_STACK_DIR'] || join(REPO_ROOT, '.stack')), 'run');
  const hz = 100; // USER_HZ: the unit of /proc/<pid>/stat's utime and stime on Linux
  for (const file of existsSync(run) ? readdirSync(run) : []) {
    if (!file.endsWith('.pid')) continue;
    try {
      const pid = readFileSync(`${run}/${file}`, 'utf8').trim();
      // Fields after the command name (which may hold spaces) start at state: utime, stime
      // are the 14th and 15th fields, i.e. the 12th and 13th after it.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out[file.slice(0, -4)] = (Number(rest[11]) + Number(rest[12])) / hz;
    } catch {
      // not running (or not ours to read): left out
    }
  }
  return out;
}
