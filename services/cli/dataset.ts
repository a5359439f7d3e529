/**
 * `erasure dataset compact --date YYYY-MM-DD`, `erasure dataset backfill --from D --to D` and
 * `erasure dataset sweep --from D --to D`: the offline dataset's jobs (services/shared/dataset).
 * Compact and backfill seal days, so both first check that the exporter is past the day
 * (day-closed.ts) unless given --force; sweep only deletes replaced files past their grace
 * period and writes `_SUCCESS`, safe on any day.
 * Exit codes: 0 done, 1 failed (backfill also when a day holds events the request store
 * lacks, unless --allow-fewer), 2 usage or configuration, 3 a day is not closed yet.
 */
import { Kafka, logLevel } from 'kafkajs';
import { BackfillFewerEventsError, backfillDays } from '../shared/dataset/backfill.ts';
import { compactDay } from '../shared/dataset/compact-day.ts';
import { exporterTopicSetting, loadDatasetSettings } from '../shared/dataset/dataset-config.ts';
import { createDatasetStore, createS3Client } from '../shared/dataset/dataset-store.ts';
import { checkDayClosed } from '../shared/dataset/day-closed.ts';
import { daysBetween, isDate } from '../shared/dataset/object-keys.ts';
import { sweepDays } from '../shared/dataset/sweep-day.ts';
import { createPool } from '../shared/db/create-pool.ts';
import { ConfigurationError } from '../shared/errors.ts';
import {
  intSetting,
  loadInfraConfig,
  parseWholeNumber,
  type DatabaseTimeouts,
} from '../shared/infra-config.ts';
import type { CliIo } from './journal-verify.ts';

export const DATASET_COMPACT_USAGE = `usage: erasure dataset compact --date YYYY-MM-DD [--force] [--grace-ms N] [--sweep-days N]

Merges the day's Parquet files into few large ones and publishes them with a new
_manifest.json; replaced files are deleted by a later sweep once --grace-ms has passed
(default DATASET_GRACE_MS or 3600000). Then sweeps the day and the --sweep-days days
before it (default 7): deletes their replaced files past the grace period and writes
_SUCCESS where only the manifest's files remain. Refuses a day the exporter may still be
writing (its end + DATASET_LATENESS_MS, default 3600000, not passed, or the exporter's
group EXPORTER_GROUP not past it) unless --force. Reads the topic EXPORTER_TOPIC.
`;

export const DATASET_BACKFILL_USAGE = `usage: erasure dataset backfill --from YYYY-MM-DD --to YYYY-MM-DD [--force] [--allow-fewer] [--grace-ms N]

Rebuilds each day of the range from the request store's published events (DATABASE_URL),
with the same event ids the exporter wrote, and publishes it with a new _manifest.json.
Prints progress to stderr. Refuses open days as compact does, unless --force. Stops with
exit 1, leaving the day as it was, at a day holding events the request store lacks (its
outbox rows purged, the wrong database): rebuilding it would drop them. --allow-fewer
replaces such days anyway. Replaced files are deleted by \`erasure dataset sweep\` once
--grace-ms has passed.
`;

export const DATASET_SWEEP_USAGE = `usage: erasure dataset sweep (--date YYYY-MM-DD | --from YYYY-MM-DD --to YYYY-MM-DD)

For each sealed day of the range: deletes the files its _manifest.json lists as superseded
whose grace period is over, drops them from the manifest, and writes _SUCCESS once the
day's *.parquet files are exactly the manifest's. Safe to run at any time, and again.
Prints progress to stderr.
`;

/** The options a command takes: `values` as `--name V` or `--name=V`, `switches` bare. */
interface FlagSpec {
  values: readonly string[];
  switches: readonly string[];
}

/**
 * Parses `--name value`, `--name=value` and bare switches. Anything else is a usage error
 * naming it: an option the command does not take (a typo must not be ignored), a value
 * given to a switch (`--force=no` must not force), a missing value, an option given twice.
 */
export function parseFlags(argv: readonly string[], spec: FlagSpec): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--') || a === '--') throw new Error(`unexpected argument ${a}`);
    const eq = a.indexOf('=');
    const name = eq === -1 ? a.slice(2) : a.slice(2, eq);
    const inline = eq === -1 ? undefined : a.slice(eq + 1);
    if (out.has(name)) throw new Error(`--${name} is given twice`);
    if (spec.switches.includes(name)) {
      if (inline !== undefined) throw new Error(`--${name} takes no value`);
      out.set(name, true);
    } else if (spec.values.includes(name)) {
      const next = argv[i + 1];
      const value = inline ?? (next === undefined || next.startsWith('--') ? undefined : argv[++i]);
      if (value === undefined || value === '') throw new Error(`--${name} needs a value`);
      out.set(name, value);
    } else throw new Error(`unknown option --${name}`);
  }
  return out;
}

/** A YYYY-MM-DD option that names a real day, or undefined when it is not given. */
function dateFlag(f: ReadonlyMap<string, string | true>, name: string): string | undefined {
  const v = f.get(name);
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !isDate(v))
    throw new Error(`--${name} ${String(v)} is not a date (YYYY-MM-DD)`);
  return v;
}

/** A whole-number option in [min, max], or `fallback` when it is not given. */
function wholeFlag<T extends number | undefined>(
  f: ReadonlyMap<string, string | true>,
  name: string,
  fallback: T,
  min: number,
  max: number,
): number | T {
  const v = f.get(name);
  if (v === undefined) return fallback;
  const n = typeof v === 'string' ? parseWholeNumber(v, min, max) : undefined;
  if (n === undefined)
    throw new Error(`--${name} must be a whole number from ${min} to ${max}, not ${String(v)}`);
  return n;
}

/** --from and --to, both real days, from ≤ to. */
function rangeFlags(f: ReadonlyMap<string, string | true>): { from: string; to: string } {
  const from = dateFlag(f, 'from');
  const to = dateFlag(f, 'to');
  if (from === undefined || to === undefined) throw new Error('--from and --to (YYYY-MM-DD) are required');
  if (from > to) throw new Error(`--from ${from} is after --to ${to}`);
  return { from, to };
}

/** DATASET_GRACE_MS's range, for --grace-ms too. */
const MAX_GRACE_MS = 30 * 86_400_000;

interface JobConfig {
  dataset: NonNullable<ReturnType<typeof loadDatasetSettings>>;
  /** EXPORTER_TOPIC: the exporter's topic, which names its files and closes its days. */
  topic: string;
  databaseUrl: string;
  databaseTimeouts: DatabaseTimeouts;
  kafkaBrokers: readonly string[];
  groupId: string;
  latenessMs: number;
  graceMs: number;
}

/** `graceMsFlag`: --grace-ms, already checked; it overrides DATASET_GRACE_MS. */
export function loadDatasetJobConfig(env: NodeJS.ProcessEnv, graceMsFlag?: number): JobConfig {
  const problems: string[] = [];
  const dataset = loadDatasetSettings(env, problems);
  const topic = exporterTopicSetting(env, problems);
  const latenessMs = intSetting(env, problems, 'DATASET_LATENESS_MS', 3_600_000, 0, 7 * 86_400_000);
  const graceMs = graceMsFlag ?? intSetting(env, problems, 'DATASET_GRACE_MS', 3_600_000, 0, MAX_GRACE_MS);
  let infra;
  try {
    infra = loadInfraConfig(env);
  } catch (err) {
    if (err instanceof ConfigurationError) problems.push(...err.problems);
    else throw err;
  }
  if (problems.length > 0 || !dataset || !infra) throw new ConfigurationError(problems);
  return {
    dataset,
    topic,
    databaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    kafkaBrokers: infra.kafkaBrokers,
    groupId: env['EXPORTER_GROUP'] || 'erasure-exporter',
    latenessMs,
    graceMs,
  };
}

async function ensureClosed(cfg: JobConfig, days: string[], io: CliIo, nowMs: number): Promise<boolean> {
  const kafka = new Kafka({
    clientId: 'erasure-dataset-cli',
    brokers: [...cfg.kafkaBrokers],
    logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (const dt of days) {
      const check = await checkDayClosed({
        admin,
        groupId: cfg.groupId,
        topic: cfg.topic,
        dt,
        nowMs,
        latenessMs: cfg.latenessMs,
      });
      if (!check.closed) {
        io.stderr.write(`erasure dataset: ${dt} is not closed: ${check.reason} (--force to go ahead)\n`);
        return false;
      }
    }
    return true;
  } finally {
    await admin.disconnect();
  }
}

/**
 * Parses and checks a command's options (usage errors: exit 2 with the usage), loads the
 * job's settings (exit 2 when invalid), then runs it. `--help`/`-h` anywhere prints the usage.
 */
async function withJob<A extends object>(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: CliIo,
  job: { name: string; usage: string; flags: FlagSpec; parse: (f: Map<string, string | true>) => A },
  body: (a: A, cfg: JobConfig) => Promise<number>,
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(job.usage);
    return 0;
  }
  let a: A;
  let cfg: JobConfig;
  try {
    a = job.parse(parseFlags(argv, job.flags));
  } catch (err) {
    io.stderr.write(`erasure dataset ${job.name}: ${(err as Error).message}\n${job.usage}`);
    return 2;
  }
  try {
    cfg = loadDatasetJobConfig(env, 'graceMs' in a && typeof a.graceMs === 'number' ? a.graceMs : undefined);
  } catch (err) {
    io.stderr.write(`erasure dataset ${job.name}: ${(err as Error).message}\n`);
    return 2;
  }
  return body(a, cfg);
}

const COMPACT = {
  name: 'compact',
  usage: DATASET_COMPACT_USAGE,
  flags: { values: ['date', 'grace-ms', 'sweep-days'], switches: ['force'] },
  parse(f: Map<string, string | true>) {
    const dt = dateFlag(f, 'date');
    if (dt === undefined) throw new Error('--date YYYY-MM-DD is required');
    return {
      dt,
      force: f.has('force'),
      graceMs: wholeFlag(f, 'grace-ms', undefined, 0, MAX_GRACE_MS),
      sweepDays: wholeFlag(f, 'sweep-days', 7, 0, 366),
    };
  },
};

export function runDatasetCompact(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return withJob(argv, env, io, COMPACT, async ({ dt, force, sweepDays }, cfg) => {
    const nowMs = Date.now();
    if (!force && !(await ensureClosed(cfg, [dt], io, nowMs))) return 3;
    const s3 = createS3Client(cfg.dataset.s3);
    try {
      const r = await compactDay({
        store: createDatasetStore(s3, cfg.dataset.bucket),
        prefix: cfg.dataset.prefix,
        topic: cfg.topic,
        dt,
        nowMs,
        graceMs: cfg.graceMs,
        sweepDays,
        progress: (line) => io.stderr.write(`erasure dataset: ${line}\n`),
      });
      const earlier = r.swept.slice(1);
      io.stdout.write(
        `${dt}: generation ${r.generation}, ${r.files} file(s), ${r.rows} rows` +
          (r.compacted
            ? ` from ${r.inputFiles} input file(s), ${r.duplicatesDropped} duplicate(s) dropped` +
              ` (${r.crossDayDuplicatesDropped} of events the previous day holds)`
            : ', nothing new') +
          `, ${r.deleted} superseded file(s) deleted` +
          `; ${earlier.length} earlier day(s) swept, ${earlier.reduce((n, d) => n + d.deleted, 0)} file(s) deleted\n`,
      );
      return 0;
    } finally {
      s3.destroy();
    }
  });
}

const BACKFILL = {
  name: 'backfill',
  usage: DATASET_BACKFILL_USAGE,
  flags: { values: ['from', 'to', 'grace-ms'], switches: ['force', 'allow-fewer'] },
  parse: (f: Map<string, string | true>) => ({
    ...rangeFlags(f),
    force: f.has('force'),
    allowFewer: f.has('allow-fewer'),
    graceMs: wholeFlag(f, 'grace-ms', undefined, 0, MAX_GRACE_MS),
  }),
};

export function runDatasetBackfill(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return withJob(argv, env, io, BACKFILL, async ({ from, to, force, allowFewer }, cfg) => {
    const nowMs = Date.now();
    if (!force && !(await ensureClosed(cfg, daysBetween(from, to), io, nowMs))) return 3;
    const s3 = createS3Client(cfg.dataset.s3);
    const db = createPool({ connectionString: cfg.databaseUrl, max: 2, timeouts: cfg.databaseTimeouts });
    try {
      const results = await backfillDays({
        db,
        store: createDatasetStore(s3, cfg.dataset.bucket),
        prefix: cfg.dataset.prefix,
        topic: cfg.topic,
        hmacKey: cfg.dataset.hmacKey,
        from,
        to,
        nowMs,
        graceMs: cfg.graceMs,
        allowFewer,
        progress: (line) => io.stderr.write(`erasure dataset: ${line}\n`),
      });
      for (const r of results)
        io.stdout.write(
          `${r.dt}: generation ${r.generation}, ${r.events} events, ${r.rows} rows, ${r.files} file(s), ` +
            `${r.deleted} superseded file(s) deleted\n`,
        );
      if (results.some((r) => r.pending > 0))
        io.stderr.write(
          `erasure dataset: replaced files are deleted by \`erasure dataset sweep --from ${from} --to ${to}\`` +
            ` once their grace period is over (after ${new Date(nowMs + cfg.graceMs).toISOString()})\n`,
        );
      return 0;
    } catch (err) {
      if (!(err instanceof BackfillFewerEventsError)) throw err;
      io.stderr.write(`erasure dataset backfill: ${err.message}\n`);
      return 1;
    } finally {
      await db.end();
      s3.destroy();
    }
  });
}

const SWEEP = {
  name: 'sweep',
  usage: DATASET_SWEEP_USAGE,
  flags: { values: ['date', 'from', 'to'], switches: [] },
  parse(f: Map<string, string | true>) {
    const dt = dateFlag(f, 'date');
    if (dt === undefined) return rangeFlags(f);
    if (f.has('from') || f.has('to')) throw new Error('--date cannot be combined with --from or --to');
    return { from: dt, to: dt };
  },
};

export function runDatasetSweep(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return withJob(argv, env, io, SWEEP, async ({ from, to }, cfg) => {
    const s3 = createS3Client(cfg.dataset.s3);
    try {
      const results = await sweepDays({
        store: createDatasetStore(s3, cfg.dataset.bucket),
        prefix: cfg.dataset.prefix,
        days: daysBetween(from, to),
        nowMs: Date.now(),
        progress: (line) => io.stderr.write(`erasure dataset: ${line}\n`),
      });
      const sealed = results.filter((r) => r.sealed);
      io.stdout.write(
        `${from}..${to}: ${sealed.length} sealed day(s) swept, ` +
          `${sealed.reduce((n, r) => n + r.deleted, 0)} superseded file(s) deleted, ` +
          `${sealed.reduce((n, r) => n + r.pending, 0)} pending, ` +
          `_SUCCESS on ${sealed.filter((r) => r.success).length} day(s)\n`,
      );
      return 0;
    } finally {
      s3.destroy();
    }
  });
}
