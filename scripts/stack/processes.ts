import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { dirname } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface DaemonSpec {
  command: string;
  args: string[];
  cwd: string;
  env?: NodeJS.ProcessEnv;
  logFile: string;
  pidFile: string;
}

/**
 * Starts a long-running process in its own process group, detached from ours, with
 * stdout and stderr appended to its log file, and records its pid. The stack outlives
 * the command that started it; `stack:down` uses the pid file to stop only what we started.
 */
export function spawnDaemon(spec: DaemonSpec): number {
  mkdirSync(dirname(spec.logFile), { recursive: true });
  mkdirSync(dirname(spec.pidFile), { recursive: true });
  const fd = openSync(spec.logFile, 'a');
  try {
    const child = spawn(spec.command, spec.args, {
      cwd: spec.cwd,
      env: spec.env ?? process.env,
      detached: true,
      stdio: ['ignore', fd, fd],
    });
    if (child.pid === undefined) throw new Error(`could not spawn ${spec.command}`);
    child.unref();
    writeFileSync(spec.pidFile, `${child.pid}\n`);
    return child.pid;
  } finally {
    closeSync(fd);
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** The pid recorded in a pid file if that process still runs; a stale file is removed. */
export function livePid(pidFile: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, 'utf8').trim());
  if (Number.isInteger(pid) && pid > 0 && isAlive(pid)) return pid;
  rmSync(pidFile, { force: true });
  return undefined;
}

/**
 * Stops the process recorded in a pid file: `signal` to its process group, then SIGKILL
 * after `graceMs`. Returns false if nothing of ours was running.
 */
export async function stopDaemon(pidFile: string, signal: NodeJS.Signals, graceMs: number): Promise<boolean> {
  const pid = livePid(pidFile);
  if (pid === undefined) return false;
  const send = (sig: NodeJS.Signals) => {
    try {
      process.kill(-pid, sig);
    } catch {
      try {
        process.kill(pid, sig);
      } catch {
        /* already gone */
      }
    }
  };
  send(signal);
  const deadline = Date.now() + graceMs;
  while (isAlive(pid) && Date.now() < deadline) await sleep(100);
  if (isAlive(pid)) {
    send('SIGKILL');
    while (isAlive(pid)) await sleep(50);
  }
  rmSync(pidFile, { force: true });
  return true;
}

/** True when something accepts TCP connections on 127.0.0.1:port. */
export function portOpen(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export interface WaitOptions {
  what: string;
  timeoutMs: number;
  intervalMs?: number;
  /** Fail early if this process dies while we wait. */
  pid?: number;
}

/**
 * Polls `attempt` until it resolves, the deadline passes, or the watched process exits.
 * Throws with the last error seen, so the caller can say why a part never became healthy.
 */
export async function waitUntil<T>(attempt: () => Promise<T>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let last: unknown;
  for (;;) {
    if (opts.pid !== undefined && !isAlive(opts.pid)) {
      throw new Error(`process exited before ${opts.what}`);
    }
    try {
      return await attempt();
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const why = last instanceof Error ? last.message : String(last);
      throw new Error(`not ${opts.what} after ${Math.round(opts.timeoutMs / 1000)} s (last error: ${why})`);
    }
    await sleep(opts.intervalMs ?? 500);
  }
}

/** Runs a short command synchronously; returns its trimmed stdout, or undefined if it failed. */
export function tryRun(command: string, args: string[], timeoutMs = 20_000): string | undefined {
  const res = spawnSync(command, args, { encoding: 'utf8', timeout: timeoutMs });
  if (res.error || res.status !== 0) return undefined;
  return `${res.stdout}${res.stderr}`.trim();
}

/** Runs a command to completion with output appended to a log file; rejects on exit != 0 or timeout. */
export function runLogged(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; logFile: string; timeoutMs: number },
): Promise<void> {
  mkdirSync(dirname(opts.logFile), { recursive: true });
  const fd = openSync(opts.logFile, 'a');
  return new Promise<void>((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: ['ignore', fd, fd],
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${command} did not finish within ${Math.round(opts.timeoutMs / 1000)} s`));
    }, opts.timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${command} exited with ${code ?? signal}`));
    });
  }).finally(() => closeSync(fd));
}

/** The first (or last) line of a log that looks like an error, for a one-line failure message. */
export function errorLine(
  logFile: string,
  pattern = /ERROR|FATAL|Exception|error:/,
  which: 'first' | 'last' = 'last',
): string | undefined {
  if (!existsSync(logFile)) return undefined;
  const lines = readFileSync(logFile, 'utf8')
    .split('\n')
    .filter((l) => pattern.test(l));
  const line = (which === 'first' ? lines[0] : lines.at(-1))?.replace(/\s+/g, ' ').trim();
  return line && line.length > 240 ? `${line.slice(0, 237)}...` : line;
}
