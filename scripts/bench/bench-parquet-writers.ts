/* eslint-disable @typescript-eslint/no-explicit-any -- the candidate writers are loaded at run time from .stack/bench-parquet, untyped. */
/**
 * Parquet writer comparison for the offline dataset (issue 6): which library writes this
 * schema fastest, in the least memory, the smallest, and correctly as read by pyarrow.
 *
 *   npm run bench -- parquet-writers [--rows=N] (default 200000)
 *   node --import tsx scripts/bench/bench-parquet-writers.ts --rows=1000000
 *
 * The candidates are not project dependencies: the script installs them with npm into
 * .stack/bench-parquet (git-ignored) the first time, so the lockfile carries only the writer
 * chosen. Each writer runs in its own child process on the same generated rows (the dataset
 * schema, one row per identifier, realistic UUIDs, emails and HMACs) fed in chunks of
 * 65,536 rows, streaming where the library can; the child reports its time and peak RSS
 * (which includes the generated input, the same for every writer). pyarrow (the project's
 * test venv) then reads every file and checks row count, types and a sample of values.
 */
import { spawnSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { REPO_ROOT } from '../stack/stack-config.ts';
import { DATASET_COLUMNS, type ColumnBuffer } from '../../services/shared/dataset/dataset-schema.ts';
import { ensurePyarrow } from '../../test/helpers/pyarrow.ts';

const BENCH_DIR = join(REPO_ROOT, '.stack', 'bench-parquet');
const CANDIDATES = {
  'hyparquet-writer': ['hyparquet-writer@0.17.0'],
  'parquetjs-lite': ['parquetjs-lite@0.8.7'],
  '@dsnp/parquetjs': ['@dsnp/parquetjs@1.8.8'],
  'parquet-wasm + apache-arrow': ['parquet-wasm@0.8.0', 'apache-arrow@21.2.0'],
  '@duckdb/node-api': ['@duckdb/node-api@1.5.6-r.1'],
} as const;
type Writer =
  | keyof typeof CANDIDATES
  | 'hyparquet-writer (tuned)'
  | 'project writer'
  | 'exporter writer (in-line)'
  | 'exporter writer (encoder thread)';
const WRITERS: Writer[] = [
  'parquetjs-lite',
  '@dsnp/parquetjs',
  'hyparquet-writer',
  'hyparquet-writer (tuned)',
  'project writer',
  'exporter writer (in-line)',
  'exporter writer (encoder thread)',
  'parquet-wasm + apache-arrow',
  '@duckdb/node-api',
];
const CHUNK = 65_536;
const KEY = Buffer.from('bench-dataset-hmac-key-0123456789abcdef');

const arg = (name: string) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1];

/** Deterministic rows: ~1.5 identifiers per event, as the intake sees them. */
function generate(from: number, to: number): ColumnBuffer {
  const cols = Object.fromEntries(DATASET_COLUMNS.map((c) => [c.name, [] as unknown[]])) as Record<
    string,
    unknown[]
  >;
  const hex = (n: number, len: number) => (n >>> 0).toString(16).padStart(len, '0').slice(-len);
  const uuid = (n: number, salt: number) =>
    `${hex(n * 2654435761 + salt, 8)}-${hex(n, 4)}-4${hex(n >> 4, 3)}-a${hex(salt, 3)}-${hex(n * 40503, 8)}${hex(salt * 7, 4)}`;
  const reasons = ['gdpr_art17', 'ccpa', 'account_deletion', 'tester_cleanup', 'retention_expiry'];
  const t0 = Date.UTC(2026, 0, 15);
  for (let row = from; row < to; row++) {
    const event = Math.floor(row / 1.5);
    const type = row % 3 === 2 ? 'email' : 'user_id';
    const value = type === 'email' ? `user${event}@mail${event % 97}.example` : String(1_000_000 + event);
    cols['event_id']!.push(uuid(event, 1));
    cols['request_id']!.push(uuid(event, 2));
    cols['identifier_type']!.push(type);
    cols['identifier_value']!.push(value);
    cols['identifier_hmac']!.push(createHmac('sha256', KEY).update(`${type}\u0000${value}`).digest());
    cols['reason']!.push(reasons[event % reasons.length]);
    cols['priority']!.push(event % 10 === 0 ? 'legal' : 'normal');
    cols['requested_at']!.push(t0 + event * 7);
    cols['event_time']!.push(t0 + event * 7 + 250);
    cols['dt']!.push('2026-01-15');
    cols['redelivery_target']!.push(event % 50 === 0 ? 'orders' : null);
    cols['kafka_partition']!.push(event % 12);
    cols['kafka_offset']!.push(BigInt(Math.floor(event / 12)));
    cols['source']!.push('exporter');
    cols['schema_version']!.push(1);
  }
  return cols as unknown as ColumnBuffer;
}

// ------------------------------------------------------------------ child: one writer
async function load(pkg: string): Promise<any> {
  const dir = join(BENCH_DIR, 'node_modules', pkg);
  const pj = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  const exp = pj.exports?.['.'] ?? pj.exports;
  const entry =
    pkg === 'parquet-wasm'
      ? 'node/parquet_wasm.js'
      : typeof exp === 'string'
        ? exp
        : (exp?.node?.import ?? exp?.import ?? exp?.default?.default ?? exp?.default ?? pj.module ?? pj.main);
  return import(pathToFileURL(join(dir, typeof entry === 'string' ? entry : (entry.default ?? entry))).href);
}

async function runWriter(writer: Writer, rows: number, out: string): Promise<void> {
  const chunks = function* () {
    for (let i = 0; i < rows; i += CHUNK) yield generate(i, Math.min(rows, i + CHUNK));
  };
  const names = DATASET_COLUMNS.map((c) => c.name);
  let encodeMs = 0;
  const timed = async (fn: () => unknown) => {
    const t = performance.now();
    await fn();
    encodeMs += performance.now() - t;
  };
  if (writer === 'hyparquet-writer' || writer === 'hyparquet-writer (tuned)') {
    const hw = await load('hyparquet-writer');
    const { PARQUET_SCHEMA } = await import('../../services/shared/dataset/parquet-file.ts');
    const tuned = writer.endsWith('(tuned)');
    const bw = new hw.ByteWriter();
    const w = new hw.ParquetWriter({ writer: bw, schema: PARQUET_SCHEMA, codec: 'SNAPPY' });
    for (const c of chunks())
      await timed(() =>
        w.write({
          columnData: names.map((n) => ({
            name: n,
            data: (c as any)[n],
            ...(tuned && ['event_id', 'request_id', 'identifier_value', 'identifier_hmac'].includes(n)
              ? { encoding: 'PLAIN', statistics: false }
              : {}),
          })),
          rowGroupSize: CHUNK,
        }),
      );
    await timed(() => w.finish());
    writeFileSync(out, bw.getBytes());
  } else if (writer === 'project writer') {
    const { ParquetFileBuilder } = await import('../../services/shared/dataset/parquet-file.ts');
    const b = new ParquetFileBuilder();
    for (const c of chunks()) await timed(() => b.append(c));
    let bytes: Uint8Array | undefined;
    await timed(() => (bytes = b.finish()));
    writeFileSync(out, bytes!);
  } else if (writer.startsWith('exporter writer')) {
    // services/exporter/columnar-file.ts takes events (one row per identifier) and computes
    // the HMAC itself: the generated rows are regrouped into events outside the timing.
    const { ColumnarFileBuilder, inlineEncoder } = await import('../../services/exporter/columnar-file.ts');
    const { workerEncoder } = await import('../../services/exporter/group-encoder.ts');
    const threaded = writer.endsWith('(encoder thread)');
    const worker = threaded ? workerEncoder(KEY) : undefined;
    const encoder = worker ?? inlineEncoder(KEY);
    const b = new ColumnarFileBuilder(encoder, CHUNK);
    for (const c of chunks()) {
      const events: { e: any; pos: any }[] = [];
      for (let i = 0; i < c.event_id.length; i++) {
        const last = events.at(-1);
        const id = { type: c.identifier_type[i]!, value: c.identifier_value[i]! };
        if (last && last.e.eventId === c.event_id[i]) {
          last.e.identifiers.push(id);
          continue;
        }
        events.push({
          e: {
            eventId: c.event_id[i],
            requestId: c.request_id[i],
            identifiers: [id],
            reason: c.reason[i],
            priority: c.priority[i],
            requestedAt: c.requested_at[i],
            redelivery: c.redelivery_target[i] === null ? null : { target: c.redelivery_target[i] },
          },
          pos: {
            eventTime: c.event_time[i],
            dt: c.dt[i],
            partition: c.kafka_partition[i],
            offset: c.kafka_offset[i],
            source: c.source[i],
          },
        });
      }
      await timed(() => {
        for (const { e, pos } of events) b.appendEvent(e, pos);
      });
    }
    let bytes: Uint8Array | undefined;
    await timed(async () => (bytes = (await b.finish()).bytes));
    await worker?.close();
    writeFileSync(out, bytes!);
  } else if (writer === 'parquetjs-lite' || writer === '@dsnp/parquetjs') {
    const lib = await load(writer);
    const P = lib.ParquetSchema ? lib : lib.default;
    const fields: Record<string, object> = {};
    for (const c of DATASET_COLUMNS)
      fields[c.name] = {
        type: {
          string: 'UTF8',
          timestamp: 'TIMESTAMP_MILLIS',
          int32: 'INT32',
          int64: 'INT64',
          bytes32: 'BYTE_ARRAY',
        }[c.kind],
        optional: c.nullable,
        compression: 'SNAPPY',
      };
    const w = await P.ParquetWriter.openFile(new P.ParquetSchema(fields), out);
    for (const c of chunks())
      await timed(async () => {
        const n = c.event_id.length;
        for (let i = 0; i < n; i++) {
          const row: Record<string, unknown> = {};
          for (const name of names) {
            const v = (c as any)[name][i];
            if (v === null) continue;
            row[name] = name === 'requested_at' || name === 'event_time' ? new Date(v) : v;
          }
          await w.appendRow(row);
        }
      });
    await timed(() => w.close());
  } else if (writer === 'parquet-wasm + apache-arrow') {
    const arrow = await load('apache-arrow');
    const pw = await load('parquet-wasm');
    const type = (k: string) =>
      ({
        string: new arrow.Utf8(),
        timestamp: new arrow.TimestampMillisecond('UTC'),
        int32: new arrow.Int32(),
        int64: new arrow.Int64(),
        bytes32: new arrow.FixedSizeBinary(32),
      })[k];
    const batches: Uint8Array[] = [];
    for (const c of chunks())
      await timed(() => {
        const vectors: Record<string, unknown> = {};
        for (const col of DATASET_COLUMNS)
          vectors[col.name] = arrow.vectorFromArray((c as any)[col.name], type(col.kind));
        batches.push(arrow.tableToIPC(new arrow.Table(vectors), 'stream'));
      });
    await timed(() => {
      const props = new pw.WriterPropertiesBuilder().setCompression(pw.Compression.SNAPPY).build();
      // One wasm table per file: parquet-wasm 0.8 has no incremental writer for node. The
      // chunks' record batches make one Arrow table (tableFromIPC takes IPC bytes, not
      // batches: passing batches was the earlier bug that lost the columns).
      const all = new arrow.Table(batches.map((b) => arrow.tableFromIPC(b)).flatMap((t: any) => t.batches));
      writeFileSync(out, pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(all, 'stream')), props));
    });
  } else if (writer === '@duckdb/node-api') {
    const duck = await load('@duckdb/node-api');
    const db = await duck.DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const sqlType = {
      string: 'VARCHAR',
      timestamp: 'BIGINT',
      int32: 'INTEGER',
      int64: 'BIGINT',
      bytes32: 'BLOB',
    } as const;
    await con.run(
      `CREATE TABLE t (${DATASET_COLUMNS.map((c) => `${c.name} ${sqlType[c.kind]}`).join(', ')})`,
    );
    const app = await con.createAppender('t');
    for (const c of chunks())
      await timed(() => {
        const n = c.event_id.length;
        for (let i = 0; i < n; i++) {
          for (const col of DATASET_COLUMNS) {
            const v = (c as any)[col.name][i];
            if (v === null) app.appendNull();
            else if (col.kind === 'string') app.appendVarchar(v);
            else if (col.kind === 'bytes32') app.appendBlob(v);
            else if (col.kind === 'int32') app.appendInteger(v);
            else app.appendBigInt(BigInt(v));
          }
          app.endRow();
        }
      });
    await timed(async () => {
      app.closeSync();
      const select = DATASET_COLUMNS.map((c) =>
        c.kind === 'timestamp' ? `epoch_ms(${c.name})::TIMESTAMPTZ AS ${c.name}` : c.name,
      ).join(', ');
      await con.run(`SET TimeZone = 'UTC'`);
      await con.run(`COPY (SELECT ${select} FROM t) TO '${out}' (FORMAT parquet, COMPRESSION snappy)`);
    });
  }
  process.stdout.write(JSON.stringify({ encodeMs, maxRssMiB: process.resourceUsage().maxRSS / 1024 }) + '\n');
}

// ------------------------------------------------------------------ driver
function ensureCandidates(): void {
  const wanted = Object.values(CANDIDATES).flat();
  const missing = wanted.filter((spec) => {
    const name = spec.slice(0, spec.lastIndexOf('@'));
    return !existsSync(join(BENCH_DIR, 'node_modules', name, 'package.json'));
  });
  if (missing.length === 0) return;
  mkdirSync(BENCH_DIR, { recursive: true });
  if (!existsSync(join(BENCH_DIR, 'package.json')))
    writeFileSync(join(BENCH_DIR, 'package.json'), '{"name":"bench-parquet","private":true}\n');
  process.stderr.write(`bench: installing ${missing.join(' ')} into ${BENCH_DIR} ...\n`);
  const res = spawnSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', BENCH_DIR, ...wanted], {
    stdio: 'inherit',
  });
  if (res.status !== 0) throw new Error('npm install of the candidate writers failed');
}

const PY_CHECK = `
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
path, rows = sys.argv[1], int(sys.argv[2])
try:
    f = pq.ParquetFile(path)
    t = f.read()
    s = t.schema
    problems = []
    if t.num_rows != rows: problems.append(f"rows {t.num_rows} != {rows}")
    for c in ("requested_at", "event_time"):
        ty = s.field(c).type
        if not pa.types.is_timestamp(ty): problems.append(f"{c} is {ty}")
        elif ty.tz not in ("UTC", "+00:00", "Etc/UTC"): problems.append(f"{c} not UTC ({ty})")
    r = t.slice(rows - 1, 1).to_pylist()[0]
    if r["identifier_type"] not in ("user_id", "email"): problems.append("bad identifier_type")
    if len(r["identifier_hmac"]) != 32: problems.append("bad hmac")
    if r["kafka_offset"] is None or r["dt"] != "2026-01-15": problems.append("bad offset/dt")
    md = f.metadata
    codecs = sorted({md.row_group(0).column(i).compression for i in range(md.num_columns)})
    print(json.dumps({"ok": not problems, "problems": problems, "rowGroups": md.num_row_groups, "codecs": codecs}))
except Exception as e:
    print(json.dumps({"ok": False, "problems": [f"{type(e).__name__}: {e}"]}))
`;

async function main(): Promise<void> {
  const rows = Number(arg('rows') ?? 200_000);
  const only = arg('writer');
  if (arg('child')) {
    await runWriter(arg('child') as Writer, rows, arg('out')!);
    return;
  }
  ensureCandidates();
  const python = await ensurePyarrow();
  const dir = join(BENCH_DIR, 'out');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const table: string[] = [
    `rows: ${rows.toLocaleString('en')} (one per identifier), 15 columns, snappy; peak RSS includes the generated input`,
    '| writer | rows/s (encode) | peak RSS | file size | pyarrow reads it |',
    '| --- | --- | --- | --- | --- |',
  ];
  for (const w of WRITERS.filter((x) => !only || x === only)) {
    const out = join(dir, `${w.replace(/[^a-z0-9]+/gi, '_')}.parquet`);
    process.stderr.write(`bench: ${w} ...\n`);
    const res = spawnSync(
      process.execPath,
      [
        '--max-old-space-size=8192',
        '--import',
        'tsx',
        import.meta.filename,
        `--child=${w}`,
        `--rows=${rows}`,
        `--out=${out}`,
      ],
      { encoding: 'utf8', timeout: 1_800_000, cwd: REPO_ROOT },
    );
    const line = res.stdout.trim().split('\n').at(-1) ?? '';
    if (res.status !== 0 || !line.startsWith('{')) {
      table.push(`| ${w} | failed: ${(res.stderr.trim().split('\n').at(-1) ?? '').slice(0, 120)} | | | |`);
      continue;
    }
    const { encodeMs, maxRssMiB } = JSON.parse(line) as { encodeMs: number; maxRssMiB: number };
    const check = spawnSync(python, ['-c', PY_CHECK, out, String(rows)], { encoding: 'utf8' });
    const verdict = JSON.parse(check.stdout.trim() || '{"ok":false,"problems":["no output"]}');
    const mib = statSync(out).size / 1048576;
    table.push(
      `| ${w} | ${Math.round(rows / (encodeMs / 1000)).toLocaleString('en')} | ${maxRssMiB.toFixed(0)} MiB | ${mib.toFixed(1)} MiB | ${
        verdict.ok
          ? `yes (${verdict.rowGroups} row groups, ${verdict.codecs.join('/')})`
          : `NO: ${verdict.problems.join('; ')}`
      } |`,
    );
  }
  process.stdout.write(`${table.join('\n')}\n`);
}

await main();
