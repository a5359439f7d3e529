import { mkdirSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createKafkaPart } from './parts/kafka.ts';
import { createPostgresPart } from './parts/postgres.ts';
import { createRegistryPart } from './parts/registry.ts';
import { createS3Part } from './parts/s3.ts';
import { isAlive, portOpen } from './processes.ts';
import { StackError } from './stack-error.ts';
import type { Part, PartName } from './parts/part.ts';
import type { StackConfig } from './stack-config.ts';

export const PART_NAMES: readonly PartName[] = ['postgres', 'kafka', 'registry', 's3'];

const EXTERNAL_ENV: Record<PartName, string> = {
  postgres: 'DATABASE_URL',
  kafka: 'KAFKA_BROKERS',
  registry: 'SCHEMA_REGISTRY_URL',
  s3: 'S3_ENDPOINT',
};

export function createParts(cfg: StackConfig): Map<PartName, Part> {
  return new Map<PartName, Part>([
    ['postgres', createPostgresPart(cfg)],
    ['kafka', createKafkaPart(cfg)],
    ['registry', createRegistryPart(cfg)],
    ['s3', createS3Part(cfg)],
  ]);
}

/** The requested parts plus everything they depend on, in dependency order. */
export function selectParts(all: Map<PartName, Part>, wanted: readonly PartName[]): Part[] {
  const out = new Set<PartName>();
  const visit = (n: PartName) => {
    for (const d of all.get(n)!.dependsOn) visit(d);
    out.add(n);
  };
  wanted.forEach(visit);
  return PART_NAMES.filter((n) => out.has(n)).map((n) => all.get(n)!);
}

export type Progress = (line: string) => void;

/**
 * One `stack:up` at a time per stack directory: a second waits for the first (bounded),
 * then finds the parts running and only probes them.
 */
async function withLock<T>(cfg: StackConfig, fn: () => Promise<T>): Promise<T> {
  mkdirSync(cfg.runDir, { recursive: true });
  const lock = join(cfg.runDir, 'stack.lock');
  const deadline = Date.now() + cfg.startTimeoutMs + cfg.fetchTimeoutMs;
  for (;;) {
    try {
      closeSync(openSync(lock, 'wx'));
      writeFileSync(lock, `${process.pid}\n`);
      break;
    } catch {
      const holder = Number(readFileSync(lock, 'utf8').trim());
      if (!holder || !isAlive(holder)) {
        rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() > deadline)
        throw new StackError('stack', `another stack command (pid ${holder}) holds ${lock}`);
      await sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    rmSync(lock, { force: true });
  }
}

export interface UpResult {
  failures: StackError[];
  ready: { part: Part; seconds: number; started: boolean }[];
}

/**
 * Brings the selected parts up: idempotent (running parts are only probed), ports checked
 * before anything starts, every part probed with a real request within a bounded time.
 * On any failure the parts this call started are stopped again, so no half-started stack
 * is left behind.
 */
export async function stackUp(
  cfg: StackConfig,
  wanted: readonly PartName[],
  progress: Progress,
): Promise<UpResult> {
  return withLock(cfg, async () => {
    const parts = selectParts(createParts(cfg), wanted);
    const failures: StackError[] = [];
    const started: Part[] = [];
    const ready: UpResult['ready'] = [];

    // 1. Ports: a local part that is not running needs its ports free.
    for (const part of parts) {
      // Only for parts with nothing of ours running: a live node of a partial cluster holds its own ports.
      if (part.external || part.running().length > 0) continue;
      for (const port of part.ports) {
        if (await portOpen(port)) {
          failures.push(
            new StackError(
              part.name,
              `port ${port} is already in use by another process; free it, set STACK_PORT_OFFSET, or set ${EXTERNAL_ENV[part.name]} to use an existing ${part.name}`,
              part.logFile,
            ),
          );
          break;
        }
      }
    }
    if (failures.length > 0) return { failures, ready };

    // 2. Fetch (Maven, apt-get) in parallel; a warm machine fetches nothing.
    const fetched = await Promise.allSettled(
      parts.map(async (part) => {
        if (!part.external) progress(`${part.name}: checking installation`);
        await part.fetch();
      }),
    );
    fetched.forEach((r, i) => {
      if (r.status === 'rejected') failures.push(asStackError(parts[i]!, r.reason));
    });
    if (failures.length > 0) return { failures, ready };

    // 3. Start and probe, each part after the parts it depends on.
    const done = new Map<PartName, Promise<void>>();
    for (const part of parts) {
      done.set(
        part.name,
        (async () => {
          await Promise.all(part.dependsOn.map((d) => done.get(d)));
          const t0 = Date.now();
          let didStart = false;
          // Start whatever is missing: a stopped part, or a dead node of a running cluster.
          if (!part.external && part.running().length < part.processCount) {
            progress(`${part.name}: starting (log: ${part.logFile})`);
            await part.start();
            started.push(part);
            didStart = true;
          }
          await part.probe(cfg.startTimeoutMs);
          ready.push({ part, seconds: (Date.now() - t0) / 1000, started: didStart });
          progress(`${part.name}: ready at ${part.endpoint} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
        })(),
      );
    }
    const results = await Promise.allSettled([...done.values()]);
    results.forEach((r, i) => {
      if (r.status === 'rejected') failures.push(asStackError(parts[i]!, r.reason));
    });
    // A part that failed only because a dependency failed says so itself; keep the root causes first.
    if (failures.length > 0) {
      for (const part of [...started].reverse()) {
        progress(`${part.name}: stopping (rolling back this start)`);
        await part.stop().catch(() => undefined);
      }
    }
    return { failures, ready };
  });
}

function asStackError(part: Part, err: unknown): StackError {
  if (err instanceof StackError) return err;
  const msg = err instanceof Error ? err.message || err.name : String(err);
  return new StackError(part.name, msg, part.external ? undefined : part.logFile);
}

/** Stops only what this project started (pid files), dependants first. */
export async function stackDown(cfg: StackConfig, progress: Progress): Promise<void> {
  const parts = [...createParts(cfg).values()].reverse();
  for (const part of parts) {
    if (part.external) continue;
    if (await part.stop()) progress(`${part.name}: stopped`);
  }
}

export interface PartStatus {
  part: Part;
  state: 'running' | 'stopped' | 'external' | 'external-unreachable' | 'not-answering';
  pids: number[];
}

export async function stackStatus(cfg: StackConfig): Promise<PartStatus[]> {
  const out: PartStatus[] = [];
  for (const part of createParts(cfg).values()) {
    if (part.external) {
      const u = new URL(
        part.endpoint.includes('://') ? part.endpoint : `tcp://${part.endpoint.split(',')[0]}`,
      );
      const reachable = await portOpen(Number(u.port) || (u.protocol === 'https:' ? 443 : 80), u.hostname);
      out.push({ part, state: reachable ? 'external' : 'external-unreachable', pids: [] });
      continue;
    }
    const pids = part.running();
    if (pids.length === 0) {
      out.push({ part, state: 'stopped', pids });
      continue;
    }
    const answering = await portOpen(part.ports[0]!);
    out.push({ part, state: answering ? 'running' : 'not-answering', pids });
  }
  return out;
}
