/**
 * `erasure dataset compact --date YYYY-MM-DD`, `erasure dataset backfill --from D --to D` and
 * `erasure dataset sweep --from D --to D`: the offline dataset's jobs (services/shared/dataset).
 * Compact and backfill seal days, so both first check that the exporter is past the day
 * (day-closed.ts) unless given --force; sweep only deletes replaced files past their grace
 * period and writes `_SUCCESS`, safe on any day.
 * Exit codes: 0 done, 1 failed, 2 usage or configuration, 3 a day is not closed yet.
 */
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { backfillDays } from '../shared/dataset/backfill.ts';
import { compactDay } from '../shared/dataset/compact-day.ts';
import { exporterTopicSetting, loadDatasetSettings } from '../shared/dataset/dataset-config.ts';
import { createDatasetStore, createS3Client } from '../shared/dataset/dataset-store.ts';
import { checkDayClosed } from '../shared/dataset/day-closed.ts';
import { daysBetween, isDate } from '../shared/dataset/object-keys.ts';
import { sweepDays } from '../shared/dataset/sweep-day.ts';
import { ConfigurationError } from '../shared/errors.ts';
import { intSetting, loadInfraConfig } from '../shared/infra-config.ts';
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

export const DATASET_BACKFILL_USAGE = `usage: erasure dataset backfill --from YYYY-MM-DD --to YYYY-MM-DD [--force] [--grace-ms N]

Rebuilds each day of the range from the request store's published events (DATABASE_URL),
with the same event ids the exporter wrote, and publishes it with a new _manifest.json.
Prints progress to stderr. Refuses open days as compact does, unless --force. Replaced
files are deleted by \`erasure dataset sweep\` once --grace-ms has passed.
`;

export const DATASET_SWEEP_USAGE = `usage: erasure dataset sweep (--date YYYY-MM-DD | --from YYYY-MM-DD --to YYYY-MM-DD)

For each sealed day of the range: deletes the files its _manifest.json lists as superseded
whose grace period is over, drops them from the manifest, and writes _SUCCESS once the
day's *.parquet files are exactly the manifest's. Safe to run at any time, and again.
Prints progress to stderr.
`;

function flags(argv: string[]): Map<string, string | true> {
  const out = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const [name, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (name === 'force' || name === 'help') out.set(name, true);
    else if (inline !== undefined) out.set(name, inline);
    else if (argv[i + 1] !== undefined) out.set(name, argv[++i]!);
    else throw new Error(`--${name} needs a value`);
  }
  return out;
}

interface JobConfig {
  dataset: NonNullable<ReturnType<typeof loadDatasetSettings>>;
  /** EXPORTER_TOPIC: the exporter's topic, which names its files and closes its days. */
  topic: string;
  databaseUrl: string;
  kafkaBrokers: readonly string[];
  groupId: string;
  latenessMs: number;
  graceMs: number;
}

export function loadDatasetJobConfig(env: NodeJS.ProcessEnv, graceFlag?: string): JobConfig {
  const problems: string[] = [];
  const dataset = loadDatasetSettings(env, problems);
  const topic = exporterTopicSetting(env, problems);
  const latenessMs = intSetting(env, problems, 'DATASET_LATENESS_MS', 3_600_000, 0, 7 * 86_400_000);
  const graceMs = intSetting(
    graceFlag === undefined ? env : { DATASET_GRACE_MS: graceFlag },
    problems,
    'DATASET_GRACE_MS',
    3_600_000,
    0,
    30 * 86_400_000,
  );
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

async function withJob(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: CliIo,
  usage: string,
  body: (f: Map<string, string | true>, cfg: JobConfig) => Promise<number>,
): Promise<number> {
  let f: Map<string, string | true>;
  let cfg: JobConfig;
  try {
    f = flags(argv);
    if (f.has('help')) {
      io.stdout.write(usage);
      return 0;
    }
    const grace = f.get('grace-ms');
    cfg = loadDatasetJobConfig(env, typeof grace === 'string' ? grace : undefined);
  } catch (err) {
    io.stderr.write(`erasure dataset: ${(err as Error).message}\n${usage}`);
    return 2;
  }
  return body(f, cfg);
}

export function runDatasetCompact(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return withJob(argv, env, io, DATASET_COMPACT_USAGE, async (f, cfg) => {
    const dt = f.get('date');
    if (typeof dt !== 'string' || !isDate(dt)) {
      io.stderr.write(`erasure dataset compact: --date YYYY-MM-DD is required\n${DATASET_COMPACT_USAGE}`);
      return 2;
    }
    const sweepFlag = f.get('sweep-days') ?? '7';
    const sweepDays = Number(sweepFlag);
    if (!Number.isInteger(sweepDays) || sweepDays < 0 || sweepDays > 366) {
      io.stderr.write(
        `erasure dataset compact: --sweep-days must be a whole number from 0 to 366\n${DATASET_COMPACT_USAGE}`,
      );
      return 2;
    }
    const nowMs = Date.now();
    if (!f.has('force') && !(await ensureClosed(cfg, [dt], io, nowMs))) return 3;
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

export function runDatasetBackfill(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return withJob(argv, env, io, DATASET_BACKFILL_USAGE, async (f, cfg) => {
    const from = f.get('from');
    const to = f.get('to');
    if (typeof from !== 'string' || typeof to !== 'string' || !isDate(from) || !isDate(to) || from > to) {
      io.stderr.write(
        `erasure dataset backfill: --from and --to (YYYY-MM-DD, from ≤ to) are required\n${DATASET_BACKFILL_USAGE}`,
      );
      return 2;
    }
    const nowMs = Date.now();
    if (!f.has('force') && !(await ensureClosed(cfg, daysBetween(from, to), io, nowMs))) return 3;
    const s3 = createS3Client(cfg.dataset.s3);
    const db = new pg.Pool({ connectionString: cfg.databaseUrl, max: 2 });
    db.on('error', () => undefined);
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
    } finally {
      await db.end();
      s3.destroy();
    }
  });
}

export function runDatasetSweep(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number> {
  return withJob(argv, env, io, DATASET_SWEEP_USAGE, async (f, cfg) => {
    const date = f.get('date');
    const from = f.has('date') ? date : f.get('from');
    const to = f.has('date') ? date : f.get('to');
    if (typeof from !== 'string' || typeof to !== 'string' || !isDate(from) || !isDate(to) || from > to) {
      io.stderr.write(
        `erasure dataset sweep: --date, or --from and --to (YYYY-MM-DD, from ≤ to), is required\n${DATASET_SWEEP_USAGE}`,
      );
      return 2;
    }
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
