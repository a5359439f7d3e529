/**
 * Exporter benchmark (issue 6): erasure events exported from Kafka to Parquet on S3, end to
 * end, with pyarrow writing the same rows as the ceiling.
 *
 *   npm run bench -- exporter [--events=N] (default 1,000,000)
 *
 * 1. Creates a bench topic (12 partitions) and produces N erasure events (Avro, the real
 *    schema id, 1–3 identifiers each, realistic ids) in large batches.
 * 2. Starts the exporter as deployed, `services/main.ts exporter`, in a child process (own
 *    group, own DATASET_PREFIX, production defaults: files roll when their partition is caught
 *    up, EXPORTER_CAUGHT_UP_ROLL_ROWS) and measures from its spawn, and from its "exporter
 *    started" line, until its group has committed every offset: rows/s and events/s, the
 *    child's peak RSS and CPU (from /proc), the files and bytes it wrote.
 * 3. pyarrow reads those files and writes the same rows again (snappy, dictionary), timed,
 *    three ways: from Arrow columns to the same S3 endpoint (the ceiling the ratio uses),
 *    from Arrow columns to a local file, and from row records (Python dicts) to S3. Prints the
 *    ratios. Then deletes the topic and the objects.
 * Benchmarks print; they assert nothing. Other engineers' tests share the 2 cores.
 */
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createDatasetStore } from '../../services/shared/dataset/dataset-store.ts';
import { createEventCodec, TOPICS, type RequestedEvent } from '../../services/shared/event-codec.ts';
import { registerSchemas } from '../../services/shared/event-log.ts';
import { infra, testKafka, testS3 } from '../../test/helpers/infra.ts';
import { PY_S3_FS, pythonS3Args, runPython } from '../../test/helpers/pyarrow.ts';
import { REPO_ROOT } from '../stack/stack-config.ts';
import { CLK_TCK, flag, postgresTicks, procTicks, stackTicks, step } from './bench-util.ts';

process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

// ------------------------------------------------------------------ exporter (child)
/**
 * The exporter as deployed: `services/main.ts exporter`, its metrics on a port. Sampling
 * erasure_dataset_events_total (every 100 ms) tells when the first and the last record were
 * read, to tell the steady rate apart from start-up (group join) and the tail (last rolls,
 * uploads, commits).
 */
function sampleEvents(port: number): { stop(): { firstEventAt?: number; lastEventAt?: number } } {
  let firstEventAt: number | undefined;
  let lastEventAt: number | undefined;
  let seen = 0;
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    fetch(`http://127.0.0.1:${port}/metrics`)
      .then((r) => r.text())
      .then((text) => {
        let n = 0;
        for (const m of text.matchAll(/^erasure_dataset_events_total\{[^}]*\} (\d+)$/gm)) n += Number(m[1]);
        if (n > 0) firstEventAt ??= Date.now();
        if (n > seen) lastEventAt = Date.now();
        seen = n;
      })
      .catch(() => undefined) // not listening yet
      .finally(() => (busy = false));
  }, 100);
  return {
    stop() {
      clearInterval(timer);
      return { firstEventAt, lastEventAt };
    },
  };
}

/** Peak resident memory of a live process (VmHWM), MiB. */
function peakRssMiB(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

// ------------------------------------------------------------------ driver
async function main(): Promise<void> {
  let n = flag('events', 1_000_000);
  const id = randomBytes(4).toString('hex');
  // --topic=NAME --rows=R: export a topic a run with --keep produced (skips producing).
  const reuse = process.argv.find((a) => a.startsWith('--topic='))?.split('=')[1];
  const topic = reuse ?? `bench.exporter.${id}`;
  const prefix = `bench/exporter-${id}`;
  const group = `bench.exporter.${id}`;
  const kafka = testKafka('bench');
  const admin = kafka.admin();
  await admin.connect();
  if (!reuse) await admin.createTopics({ waitForLeaders: true, topics: [{ topic, numPartitions: 12 }] });
  const s3 = testS3();
  const store = createDatasetStore(s3, infra.s3.bucket);
  try {
    // Encoded with the real requested-event schema id: the exporter decodes by that id. A
    // fresh stack has no schemas yet (npm start registers them); registering is idempotent.
    await registerSchemas(infra.schemaRegistryUrl, join(REPO_ROOT, 'schemas', 'avro'));
    const codec = createEventCodec(infra.schemaRegistryUrl);
    const producer = kafka.producer({ allowAutoTopicCreation: false });
    await producer.connect();
    const t0 = Date.now();
    let rows = reuse ? flag('rows', 0, 0) : 0;
    const batch = 20_000;
    for (let i = 0; i < (reuse ? 0 : n); i += batch) {
      const messages = [];
      for (let k = i; k < Math.min(n, i + batch); k++) {
        const ids = [{ type: 'user_id', value: String(10_000_000 + k) }];
        if (k % 2 === 0) ids.push({ type: 'email', value: `user${k}@mail${k % 97}.example` });
        if (k % 5 === 0) ids.push({ type: 'device_id', value: randomUUID() });
        rows += ids.length;
        const e: RequestedEvent = {
          eventId: randomUUID(),
          requestId: randomUUID(),
          identifiers: ids,
          reason: k % 3 ? 'gdpr_art17' : 'account_deletion',
          requestedAt: t0 - 60_000 + k,
          targets: ['orders', 'profiles'],
          priority: 'normal',
          notBefore: null,
          deadline: t0 + 30 * 86_400_000,
          redelivery: null,
        };
        messages.push({ key: e.requestId, value: await codec.encode(TOPICS.requested, e) });
      }
      await producer.send({ topic, acks: 1, messages });
      if ((i / batch) % 10 === 0) step(`produced ${Math.min(n, i + batch).toLocaleString('en')} events`);
    }
    await producer.disconnect();
    const offsets = await admin.fetchTopicOffsets(topic);
    const end = offsets.map((p) => ({ partition: p.partition, offset: BigInt(p.high) }));
    // A kept topic holds what its run produced: one record per event.
    if (reuse) n = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
    step(
      `produced ${n.toLocaleString('en')} events (${rows.toLocaleString('en')} rows) in ${((Date.now() - t0) / 1000).toFixed(1)} s`,
    );

    // --cpu-prof[=DIR]: the exporter child writes a V8 CPU profile there (default scratch/).
    const prof = process.argv.find((a) => a.startsWith('--cpu-prof'));
    const profArgs = prof
      ? ['--cpu-prof', `--cpu-prof-dir=${prof.split('=')[1] ?? `${REPO_ROOT}/scratch`}`]
      : [];
    const metricsPort = 19_000 + Math.floor(Math.random() * 1000);
    const child = spawn(
      process.execPath,
      [...profArgs, '--import', 'tsx', join(REPO_ROOT, 'services', 'main.ts'), 'exporter'],
      {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          EXPORTER_TOPIC: topic,
          EXPORTER_GROUP: group,
          DATASET_PREFIX: prefix,
          DATASET_HMAC_KEY: 'bench-dataset-hmac-key-0123456789abcdef',
          METRICS_PORT: String(metricsPort),
          LOG_LEVEL: 'info',
        },
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const started = Date.now();
    const serversBefore: Record<string, number> = { ...stackTicks(), postgres: postgresTicks() };
    const sampler = sampleEvents(metricsPort);
    // Its info line once start() returned (joined, reading).
    while (!out.includes('"exporter started"')) {
      if (child.exitCode !== null) throw new Error(`the exporter exited (${child.exitCode}):\n${out}`);
      await sleep(20);
    }
    const ready = Date.now();
    for (;;) {
      const [c] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
      const committed = new Map(c!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
      if (end.every((e) => (committed.get(e.partition) ?? -1n) >= e.offset)) break;
      await sleep(50);
    }
    const seconds = (Date.now() - started) / 1000;
    const serversAfter: Record<string, number> = { ...stackTicks(), postgres: postgresTicks() };
    // Every thread of the process (main, encoder, libuv pool), from spawn to the last commit.
    const cpuSeconds = (procTicks(child.pid!)?.self ?? NaN) / CLK_TCK;
    const maxRssMiB = peakRssMiB(child.pid!);
    const { firstEventAt, lastEventAt } = sampler.stop();
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
    const serverCpu = Object.keys(serversAfter)
      .map((name) => `${name} ${((serversAfter[name]! - (serversBefore[name] ?? 0)) / CLK_TCK).toFixed(1)} s`)
      .join(', ');
    const span = firstEventAt && lastEventAt ? (lastEventAt - firstEventAt) / 1000 : NaN;
    const objects = (await store.list(`${prefix}/`)).filter((o) => o.key.endsWith('.parquet'));
    const bytes = objects.reduce((s, o) => s + o.size, 0);

    const exported = rows / seconds;
    const fromReady = rows / (seconds - (ready - started) / 1000);
    const rate = (r: number) => `${Math.round(r).toLocaleString('en')} rows/s`;
    process.stdout.write(
      [
        `events: ${n.toLocaleString('en')}, rows: ${rows.toLocaleString('en')}`,
        `exporter end to end (process start → every offset committed): ${seconds.toFixed(1)} s = ${rate(exported)}, ${Math.round(n / seconds).toLocaleString('en')} events/s`,
        `exporter end to end (ready → every offset committed): ${(seconds - (ready - started) / 1000).toFixed(1)} s = ${rate(fromReady)}`,
        `  of which: process start ${((ready - started) / 1000).toFixed(1)} s, first record read ${firstEventAt ? ((firstEventAt - started) / 1000).toFixed(1) : '?'} s after start (group join), last record read ${lastEventAt ? ((lastEventAt - started) / 1000).toFixed(1) : '?'} s after start`,
        `exporter reading rate (first → last record read, ±100 ms): ${rate(rows / span)}`,
        `exporter peak RSS: ${maxRssMiB.toFixed(0)} MiB`,
        `CPU over those ${seconds.toFixed(1)} s (${availableParallelism()} cores = ${(availableParallelism() * seconds).toFixed(1)} core-seconds): exporter ${cpuSeconds.toFixed(1)} s (all threads); servers: ${serverCpu || 'not started by this repo'}`,
        `files: ${objects.length}, bytes: ${(bytes / 1048576).toFixed(1)} MiB`,
      ].join('\n') + '\n',
    );
    step('pyarrow: reading the files and writing the same rows (the ceiling) ...');
    const ceiling = await runPython<{
      rows: number;
      seconds: number;
      localSeconds: number;
      rowsSeconds: number;
      rowsRows: number;
    }>(
      String.raw`
import json, sys, time, tempfile, os
import pyarrow as pa, pyarrow.parquet as pq, pyarrow.fs as pafs
a = json.loads(sys.argv[1])
${PY_S3_FS}
sel = pafs.FileSelector(a["bucket"] + "/" + a["prefix"], recursive=True)
t = pa.concat_tables([pq.read_table(i.path, filesystem=fs) for i in fs.get_file_info(sel) if i.path.endswith(".parquet")])
opts = dict(compression="snappy", use_dictionary=True, row_group_size=131072)
t0 = time.perf_counter()
pq.write_table(t, a["bucket"] + "/" + a["prefix"] + "-ceiling/ceiling.parquet", filesystem=fs, **opts)
s3_seconds = time.perf_counter() - t0
fs.delete_file(a["bucket"] + "/" + a["prefix"] + "-ceiling/ceiling.parquet")
out = os.path.join(tempfile.mkdtemp(), "ceiling.parquet")
t0 = time.perf_counter()
pq.write_table(t, out, **opts)
local_seconds = time.perf_counter() - t0
os.remove(out); os.rmdir(os.path.dirname(out))
# From rows: the same rows as Python records (untimed), in chunks as a streaming writer
# would get them; timed: records to columns (pyarrow) and the Parquet write to S3.
rows_seconds = 0.0
key = a["bucket"] + "/" + a["prefix"] + "-ceiling/from-rows.parquet"
with fs.open_output_stream(key) as sink:
    w = None
    for b in t.slice(0, 2000000).to_batches(max_chunksize=131072):
        records = b.to_pylist()
        t0 = time.perf_counter()
        chunk = pa.Table.from_pylist(records, schema=t.schema)
        if w is None:
            w = pq.ParquetWriter(sink, t.schema, compression="snappy", use_dictionary=True)
        w.write_table(chunk, row_group_size=131072)
        rows_seconds += time.perf_counter() - t0
    t0 = time.perf_counter()
    w.close()
rows_seconds += time.perf_counter() - t0
fs.delete_file(key)
print(json.dumps({"rows": t.num_rows, "seconds": s3_seconds, "localSeconds": local_seconds, "rowsSeconds": rows_seconds, "rowsRows": min(t.num_rows, 2000000)}))
`,
      [JSON.stringify(pythonS3Args(prefix))],
      {},
      600_000,
    );
    const pyarrowRate = ceiling.rows / ceiling.seconds;
    const pyarrowLocal = ceiling.rows / ceiling.localSeconds;
    const pyarrowRows = ceiling.rowsRows / ceiling.rowsSeconds;
    process.stdout.write(
      [
        `rows read back by pyarrow: ${ceiling.rows.toLocaleString('en')}`,
        `ceiling, pyarrow writing the same rows to the same S3 endpoint: ${rate(pyarrowRate)}; exporter (process start) ÷ pyarrow = ${(exported / pyarrowRate).toFixed(2)}, (ready) ÷ pyarrow = ${(fromReady / pyarrowRate).toFixed(2)}`,
        `  pyarrow writing them to a local file instead: ${rate(pyarrowLocal)}; exporter (process start) ÷ that = ${(exported / pyarrowLocal).toFixed(2)}`,
        `  pyarrow given them as row records (Python dicts, 131,072 at a time; the first ≤2M rows), to S3: ${rate(pyarrowRows)}; exporter (process start) ÷ that = ${(exported / pyarrowRows).toFixed(2)}`,
      ].join('\n') + '\n',
    );
  } finally {
    // The objects always go (kept, they filled the S3 server's disk run after run and slowed
    // later runs); --keep keeps only the produced topic. No slash: the ceiling's own objects
    // (`${prefix}-ceiling/`) go too if the Python script failed before deleting them.
    const objects = await store.list(prefix).catch(() => []);
    await store.delete(objects.map((o) => o.key)).catch(() => undefined);
    if (process.argv.includes('--keep')) step(`kept topic ${topic} (re-run with --topic=${topic} --rows=N)`);
    else if (!reuse) await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin.disconnect();
    s3.destroy();
  }
}

await main();
