// Compaction and backfill of the offline dataset against the real stack, read back with
// pyarrow from the S3 endpoint following the reader protocol (manifest first).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { Producer } from 'kafkajs';
import { loadExporterConfig, start } from '../../services/exporter/index.ts';
import type pg from 'pg';
import { runCli } from '../../services/cli/main.ts';
import { BackfillFewerEventsError, backfillDays } from '../../services/shared/dataset/backfill.ts';
import { compactDay } from '../../services/shared/dataset/compact-day.ts';
import { appendEventRows, emptyColumns } from '../../services/shared/dataset/dataset-schema.ts';
import { createDatasetStore } from '../../services/shared/dataset/dataset-store.ts';
import { readManifest } from '../../services/shared/dataset/manifest.ts';
import { exporterFileKey } from '../../services/shared/dataset/object-keys.ts';
import { encodeParquet } from '../../services/shared/dataset/parquet-file.ts';
import { sweepDay } from '../../services/shared/dataset/sweep-day.ts';
import { migrate } from '../../services/shared/db/migrate.ts';
import { createEventCodec, TOPICS, type RequestedEvent } from '../../services/shared/event-codec.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { SCHEMAS_SQL } from '../helpers/api.ts';
import { readDataset } from '../helpers/dataset-reader.ts';
import {
  createTestDatabase,
  infra,
  positionNewGroup,
  testKafka,
  testS3,
  topicEnd,
  uniqueName,
} from '../helpers/infra.ts';
import { ensurePyarrow, PY_READ_MANIFEST, PY_S3_FS, pythonS3Args, runPython } from '../helpers/pyarrow.ts';

const TOPIC = TOPICS.requested;
const HMAC_KEY = 'dataset-jobs-test-hmac-key-0123456789abcdef';
const DAY = '2001-03-05';
const T0 = Date.parse(`${DAY}T08:00:00Z`);

/** A published event as the relay leaves it in the request store: an outbox row, sent at `at`. */
async function insertSent(pool: pg.Pool, e: RequestedEvent, at: Date): Promise<void> {
  await pool.query(
    `INSERT INTO outbox (topic, event_key, payload, status, sent_at) VALUES ($1, $2, $3, 'sent', $4)`,
    [
      TOPIC,
      e.requestId,
      JSON.stringify({
        ...e,
        requestedAt: new Date(e.requestedAt).toISOString(),
        deadline: new Date(e.deadline).toISOString(),
      }),
      at,
    ],
  );
}

function makeEvent(i: number, requestedAt: number): RequestedEvent {
  return {
    eventId: randomUUID(),
    requestId: randomUUID(),
    identifiers: [
      { type: 'user_id', value: `jobs-${i}-${randomUUID().slice(0, 8)}` },
      ...(i % 2 ? [{ type: 'email', value: `jobs${i}@example.net` }] : []),
    ],
    reason: 'gdpr_art17',
    requestedAt,
    targets: ['orders'],
    priority: 'normal',
    notBefore: null,
    deadline: requestedAt + 30 * 86_400_000,
    redelivery: null,
  };
}

/** A reader in its own process, following the manifest in a loop while the test compacts. */
const LOOPING_READER = String.raw`
import json, sys, time
import pyarrow.parquet as pq, pyarrow.fs as pafs
a = json.load(open(sys.argv[1]))
${PY_S3_FS}
${PY_READ_MANIFEST}
base = f'{a["bucket"]}/{a["prefix"]}/dt={a["dt"]}/'
deadline = time.time() + a["seconds"]
last_reads = 0
while time.time() < deadline and last_reads < 2:
    m = read_manifest(fs, base + "_manifest.json")
    if m is None:
        print(json.dumps({"sealed": False}), flush=True); time.sleep(0.05); continue
    keys = []
    for x in m["files"]:
        t = pq.read_table(base + x["name"], filesystem=fs, columns=["event_id", "identifier_type", "identifier_value"])
        keys += [f'{r["event_id"]}/{r["identifier_type"]}/{r["identifier_value"]}' for r in t.to_pylist()]
        time.sleep(0.05)
    last_reads += m["generation"] == a["lastGeneration"]
    print(json.dumps({"sealed": True, "generation": m["generation"], "rows": len(keys), "distinct": len(set(keys)),
                      "keys": sorted(set(keys)) if a["withKeys"] else None}), flush=True)
`;

/**
 * A Hadoop/Spark-style reader: waits for `_SUCCESS`, then reads the glob dt=…/*.parquet
 * (the documented path) and nothing else of the protocol.
 */
const GLOB_READER = String.raw`
import json, sys, pyarrow.dataset as ds, pyarrow.fs as pafs
a = json.loads(sys.argv[1])
${PY_S3_FS}
base = a["bucket"] + "/" + a["prefix"] + "/dt=" + a["dt"] + "/"
if fs.get_file_info(base + "_SUCCESS").type == pafs.FileType.NotFound:
    print(json.dumps({"ready": False}))
else:
    names = [i.path for i in fs.get_file_info(pafs.FileSelector(base)) if i.path.endswith(".parquet")]
    t = ds.dataset(names, filesystem=fs, format="parquet").to_table(columns=["event_id", "identifier_type", "identifier_value"])
    keys = [f'{r["event_id"]}/{r["identifier_type"]}/{r["identifier_value"]}' for r in t.to_pylist()]
    print(json.dumps({"ready": True, "rows": len(keys), "distinct": len(set(keys))}))
`;

describe('dataset jobs: compaction and backfill', () => {
  const prefix = `test/${uniqueName('dataset-jobs')}`;
  const codec = createEventCodec(infra.schemaRegistryUrl);
  const kafka = testKafka();
  const s3 = testS3();
  const store = createDatasetStore(s3, infra.s3.bucket);
  const group = uniqueName('exporter-jobs');
  let producer: Producer;
  let startOffsets: { partition: number; offset: string }[];
  const events: RequestedEvent[] = [];
  const env = {
    ...process.env,
    DATASET_PREFIX: prefix,
    DATASET_HMAC_KEY: HMAC_KEY,
    EXPORTER_GROUP: group,
    EXPORTER_MAX_FILE_ROWS: '30',
    EXPORTER_MAX_FILE_AGE_MS: '300',
    LOG_LEVEL: 'error',
  };
  const keysOf = (es: RequestedEvent[]) =>
    es.flatMap((e) => e.identifiers.map((i) => `${e.eventId}/${i.type}/${i.value}`)).sort();
  const namesIn = async (dt: string) =>
    (await store.list(`${prefix}/dt=${dt}/`)).map((o) => o.key.split('/').at(-1)!).sort();
  const globRead = (dt: string) =>
    runPython<{ ready: boolean; rows?: number; distinct?: number }>(GLOB_READER, [
      JSON.stringify({ ...pythonS3Args(prefix), dt }),
    ]);

  /**
   * Exporter files of `dt` written straight to S3 (as the exporter names them), `perFile`
   * events each, one identifier per event; the file at `files` offsets from `firstOffset`.
   */
  async function putExporterFiles(
    dt: string,
    files: number,
    perFile: number,
    topic: string = TOPIC,
    firstOffset = 0,
  ): Promise<RequestedEvent[]> {
    const out: RequestedEvent[] = [];
    const t0 = Date.parse(`${dt}T12:00:00Z`);
    for (let f = 0; f < files; f++) {
      const cols = emptyColumns();
      for (let i = 0; i < perFile; i++) {
        const o = firstOffset + f * perFile + i;
        const e = { ...makeEvent(o, t0), identifiers: [{ type: 'email', value: `g${o}@x.example` }] };
        out.push(e);
        appendEventRows(cols, Buffer.from(HMAC_KEY), e, {
          eventTime: t0 + o,
          partition: 0,
          offset: BigInt(o),
          source: 'exporter',
        });
      }
      const first = BigInt(firstOffset + f * perFile);
      await store.put(
        exporterFileKey(prefix, dt, topic, 0, first, first + BigInt(perFile - 1)),
        encodeParquet(cols),
        'application/vnd.apache.parquet',
      );
    }
    return out;
  }

  async function produce(n: number): Promise<void> {
    const batch = Array.from({ length: n }, (_, k) => makeEvent(events.length + k, T0 + events.length + k));
    const messages = await Promise.all(
      batch.map(async (e, k) => ({
        key: e.requestId,
        value: await codec.encode(TOPIC, e),
        timestamp: String(T0 + (events.length + k) * 10),
      })),
    );
    await producer.send({ topic: TOPIC, messages });
    events.push(...batch);
  }

  /** Runs the exporter until its group has committed everything produced so far. */
  async function exportAll(groupId = group): Promise<void> {
    const end = await topicEnd(TOPIC);
    await positionNewGroup(groupId, TOPIC, startOffsets);
    const exporter = await start(
      loadExporterConfig({ ...env, EXPORTER_GROUP: groupId }),
      createLogger({ service: 'exporter', level: 'error' }),
    );
    const admin = kafka.admin();
    await admin.connect();
    try {
      for (const t0 = Date.now(); ;) {
        const [c] = await admin.fetchOffsets({ groupId, topics: [TOPIC] });
        const committed = new Map(c!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
        if (end.every((e) => (committed.get(e.partition) ?? -1n) >= BigInt(e.offset))) break;
        if (Date.now() - t0 > 40_000) throw new Error('exporter did not catch up');
        await sleep(200);
      }
    } finally {
      await admin.disconnect();
      await exporter.stop();
    }
  }

  before(async () => {
    await ensurePyarrow();
    producer = kafka.producer({ idempotent: true });
    await producer.connect();
    startOffsets = await topicEnd(TOPIC);
  });
  after(async () => {
    await producer.disconnect();
    const objects = await store.list(`${prefix}/`);
    await store.delete(objects.map((o) => o.key));
    s3.destroy();
  });

  it('compaction seals a day; a reader following the manifest during a second compaction always sees a complete day once', async () => {
    await produce(80);
    await exportAll();
    const first = await compactDay({
      store,
      prefix,
      topic: TOPIC,
      dt: DAY,
      nowMs: Date.now(),
      graceMs: 60_000,
    });
    assert.equal(first.generation, 1);
    assert.ok(first.inputFiles > 1, 'several exporter files merged');
    assert.equal(first.files, 1);
    const gen1 = keysOf(events);

    // Late events for the sealed day, exported as new files while a reader loops.
    const cfgFile = join(tmpdir(), `${uniqueName('reader')}.json`);
    writeFileSync(
      cfgFile,
      JSON.stringify({
        ...pythonS3Args(prefix),
        dt: DAY,
        // It reads until it has read the second generation twice (or for at most a minute).
        seconds: 60,
        lastGeneration: 2,
        withKeys: true,
      }),
    );
    const reader = spawn(await ensurePyarrow(), ['-c', LOOPING_READER, cfgFile], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    reader.stdout.on('data', (d) => (out += d));
    const done = new Promise((r) => reader.once('exit', r));
    // The late events come once the reader has read generation 1 (its start-up, importing
    // pyarrow, takes from under a second to several on a loaded machine).
    for (const t0 = Date.now(); !out.includes('"sealed": true') && Date.now() - t0 < 30_000;) await sleep(50);
    await produce(40);
    await exportAll();
    const second = await compactDay({
      store,
      prefix,
      topic: TOPIC,
      dt: DAY,
      nowMs: Date.now(),
      graceMs: 60_000,
    });
    assert.equal(second.generation, 2);
    await done;

    const gen2 = keysOf(events);
    const reads = out
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    assert.ok(reads.length >= 3, 'the reader read several times');
    for (const r of reads) {
      assert.equal(r.sealed, true);
      assert.equal(r.rows, r.distinct, 'no duplicate in any read');
      assert.deepEqual(r.keys, r.generation === 1 ? gen1 : gen2, `generation ${r.generation} read whole`);
    }
    assert.ok(
      reads.some((r) => r.generation === 1) && reads.some((r) => r.generation === 2),
      'both generations seen',
    );

    // Old files stay until the grace period is over, then a later run deletes them.
    const m = (await readManifest(store, prefix, DAY))!;
    assert.ok(m.superseded.length > 0);
    const third = await compactDay({
      store,
      prefix,
      topic: TOPIC,
      dt: DAY,
      nowMs: Date.now() + 61_000,
      graceMs: 60_000,
    });
    assert.equal(third.compacted, false);
    assert.equal(third.deleted, m.superseded.length);
    const names = (await store.list(`${prefix}/dt=${DAY}/`)).map((o) => o.key.split('/').at(-1));
    assert.deepEqual(names.sort(), ['_SUCCESS', '_manifest.json', 'compacted-g000002-0001.parquet']);

    // A replay from the start by a new group adds nothing to the sealed day.
    await exportAll(uniqueName('exporter-jobs-replay'));
    const read = await readDataset(prefix, { days: [DAY], eventIds: events.map((e) => e.eventId) });
    assert.deepEqual(
      read.rows.map((r) => `${r.event_id}/${r.identifier_type}/${r.identifier_value}`).sort(),
      gen2,
    );
    assert.ok(!(await store.list(`${prefix}/dt=${DAY}/`)).some((o) => o.key.includes('/part-')));
  });

  it('an event the relay published again after midnight stays in the earlier day only', async () => {
    const [d1, d2] = ['2001-05-01', '2001-05-02'];
    const midnight = Date.parse(`${d2}T00:00:00Z`);
    const twice = makeEvent(1, midnight - 60_000); // two identifiers: two rows per copy
    const others = [makeEvent(2, midnight - 90_000), makeEvent(3, midnight + 5_000), makeEvent(4, midnight)];
    const stamped: [RequestedEvent, number][] = [
      [others[0]!, midnight - 3_600_000], // the previous day, outside the window searched
      [twice, midnight - 10_000], // published at 23:59:50 and not marked sent …
      [others[1]!, midnight - 2_000],
      [twice, midnight + 20_000], // … so published again, after its lease, at 00:00:20
      [others[2]!, midnight + 30_000],
    ];
    await producer.send({
      topic: TOPIC,
      messages: await Promise.all(
        stamped.map(async ([e, at]) => ({
          key: e.requestId,
          value: await codec.encode(TOPIC, e),
          timestamp: String(at),
        })),
      ),
    });
    await exportAll();
    const first = await compactDay({
      store,
      prefix,
      topic: TOPIC,
      dt: d1,
      nowMs: Date.now(),
      graceMs: 60_000,
    });
    assert.equal(first.crossDayDuplicatesDropped, 0);
    const second = await compactDay({
      store,
      prefix,
      topic: TOPIC,
      dt: d2,
      nowMs: Date.now(),
      graceMs: 60_000,
    });
    assert.equal(second.crossDayDuplicatesDropped, 2, 'both rows of the second copy');

    const read = await readDataset(prefix, {
      days: [d1, d2],
      eventIds: [twice, ...others].map((e) => e.eventId),
    });
    const got = read.rows
      .map((r) => `${r.dt} ${r.event_id}/${r.identifier_type}/${r.identifier_value}`)
      .sort();
    const filed = (dt: string, es: RequestedEvent[]) => keysOf(es).map((k) => `${dt} ${k}`);
    assert.deepEqual(got, [...filed(d1, [others[0]!, twice, others[1]!]), ...filed(d2, [others[2]!])].sort());
  });

  it('backfill rebuilds days from the request store with the published event ids, once, also when run twice', async () => {
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, SCHEMAS_SQL);
      const from = '2001-04-07';
      const to = '2001-04-08';
      const sent = [
        ...Array.from({ length: 30 }, (_, i) => Date.parse(`${from}T10:00:00Z`) + i * 1000),
        ...Array.from({ length: 30 }, (_, i) => Date.parse(`${to}T10:00:00Z`) + i * 1000),
        Date.parse('2001-04-09T00:00:00.005Z'), // Kafka stamped it on the 8th: kept in the range's last day
        Date.parse('2001-04-10T12:00:00Z'), // outside the range
        // Sent (database clock) just before the range, and the day before does not hold it
        // (its Kafka timestamp, the relay's clock running ahead, put it on the 7th): kept in
        // the range's first day, not lost between the two.
        Date.parse('2001-04-06T23:59:59.995Z'),
      ];
      const published: RequestedEvent[] = [];
      for (const [i, at] of sent.entries()) {
        const e = makeEvent(i, at - 5000);
        published.push(e);
        await insertSent(db.pool, e, new Date(at));
      }
      const io = { stdout: new PassThrough(), stderr: new PassThrough() };
      let stdout = '';
      io.stdout.on('data', (d) => (stdout += d));
      const cliEnv = { ...env, DATABASE_URL: db.url };
      for (let run = 1; run <= 2; run++) {
        const code = await runCli(['dataset', 'backfill', '--from', from, '--to', to, '--force'], cliEnv, io);
        assert.equal(code, 0, stdout);
      }
      assert.match(stdout, /2001-04-08: generation 2, 31 events/);
      const read = await readDataset(prefix, { days: [from, to], eventIds: published.map((e) => e.eventId) });
      const expected = keysOf([...published.slice(0, 61), published[62]!]);
      assert.deepEqual(
        read.rows.map((r) => `${r.event_id}/${r.identifier_type}/${r.identifier_value}`).sort(),
        expected,
      );
      assert.ok(read.rows.every((r) => r.source === 'backfill' && r.kafka_offset === null));
      assert.equal(read.days[from]?.sealed, true);
      assert.equal(read.days[from]?.generation, 2);

      // Without --force, an open day is refused.
      const refused = await runCli(
        ['dataset', 'compact', '--date', new Date().toISOString().slice(0, 10)],
        cliEnv,
        io,
      );
      assert.equal(refused, 3);
    } finally {
      await db.drop();
    }
  });

  it('backfills run separately on either side of a midnight keep an event sent near it in one day', async () => {
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, SCHEMAS_SQL);
      // Days of their own: a backfill replaces its days whole (the test above wrote 2001-05-01/02).
      // Sent two minutes before midnight by the database's clock.
      const e = makeEvent(900, Date.parse('2001-05-12T23:50:00Z'));
      await insertSent(db.pool, e, new Date('2001-05-12T23:58:00Z'));
      const io = { stdout: new PassThrough(), stderr: new PassThrough() };
      const cliEnv = { ...env, DATABASE_URL: db.url };
      // The later day first: the day before holds nothing, so its first day keeps the event.
      assert.equal(
        await runCli(
          ['dataset', 'backfill', '--from', '2001-05-13', '--to', '2001-05-13', '--force'],
          cliEnv,
          io,
        ),
        0,
      );
      // Then the days before: the day after holds it now, so the range's last day leaves it.
      assert.equal(
        await runCli(
          ['dataset', 'backfill', '--from', '2001-05-11', '--to', '2001-05-12', '--force'],
          cliEnv,
          io,
        ),
        0,
      );
      const read = await readDataset(prefix, {
        days: ['2001-05-11', '2001-05-12', '2001-05-13'],
        eventIds: [e.eventId],
      });
      assert.deepEqual(
        read.rows.map((r) => `${r.event_id}/${r.identifier_type}/${r.identifier_value}`).sort(),
        keysOf([e]),
      );
    } finally {
      await db.drop();
    }
  });

  /** A day sealed and swept: `_SUCCESS`, its manifest and one compacted file of `n` events. */
  async function sealedDay(dt: string, n: number): Promise<RequestedEvent[]> {
    const es = await putExporterFiles(dt, 1, n);
    const t = Date.now() - 2 * 3_600_000;
    await compactDay({ store, prefix, topic: TOPIC, dt, nowMs: t, graceMs: 3_600_000, sweepDays: 0 });
    assert.equal((await sweepDay({ store, prefix, dt, nowMs: Date.now() })).success, true);
    return es;
  }

  /** The day's objects with their sizes, and its manifest: what "left as it was" compares. */
  const dayState = async (dt: string) => ({
    objects: (await store.list(`${prefix}/dt=${dt}/`)).map((o) => `${o.key.split('/').at(-1)} ${o.size}`),
    manifest: await readManifest(store, prefix, dt),
  });

  it('backfill refuses, exit 1 and one line, a day holding events the request store lacks; the day is left as it was', async () => {
    const dt = '2001-08-01';
    const es = await sealedDay(dt, 10);
    const sealed = await dayState(dt);
    assert.ok(sealed.objects.some((o) => o.startsWith('_SUCCESS')));
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, SCHEMAS_SQL);
      const io = { stdout: new PassThrough(), stderr: new PassThrough() };
      let stderr = '';
      io.stderr.on('data', (d) => (stderr += d));
      const cliEnv = { ...env, DATABASE_URL: db.url };
      const backfill = (...more: string[]) =>
        runCli(['dataset', 'backfill', '--from', dt, '--to', dt, '--force', ...more], cliEnv, io);

      // An empty request store (the wrong database, its outbox purged): nothing to rebuild from.
      assert.equal(await backfill(), 1);
      const lines = stderr.trim().split('\n');
      assert.equal(lines.length, 1, stderr);
      assert.match(
        lines[0]!,
        /2001-08-01: refused: the request store yields 0 events \(0 rows\) for the day, which holds 10 events \(10 rows\); 10 of them are not in the store.*--allow-fewer/,
      );
      assert.deepEqual(await dayState(dt), sealed);

      // Fewer than the day holds, in more files than one (written before the count is known):
      // they are deleted again and _SUCCESS restored.
      for (const [i, e] of es.slice(0, 4).entries())
        await insertSent(db.pool, e, new Date(Date.parse(`${dt}T12:00:00Z`) + i));
      await assert.rejects(
        backfillDays({
          db: db.pool,
          store,
          prefix,
          topic: TOPIC,
          hmacKey: Buffer.from(HMAC_KEY),
          from: dt,
          to: dt,
          nowMs: Date.now(),
          graceMs: 1000,
          fileRows: 1,
        }),
        (err: Error) =>
          err instanceof BackfillFewerEventsError && /yields 4 events.*6 of them/.test(err.message),
      );
      assert.deepEqual(await dayState(dt), sealed);

      // --allow-fewer: the operator means it.
      stderr = '';
      assert.equal(await backfill('--allow-fewer'), 0, stderr);
      const m = (await readManifest(store, prefix, dt))!;
      assert.deepEqual([m.generation, m.events, m.rows], [2, 4, 4]);
    } finally {
      await db.drop();
    }
  });

  it('backfill does not count an event moved across an inner midnight of its range as lost', async () => {
    const [d1, d2] = ['2001-08-05', '2001-08-06'];
    // The exporter filed it on d1 (Kafka timestamp 23:59:59.990); the database marked it sent
    // at 00:00:00.010 on d2, so the backfill of d1..d2 files it in d2.
    const e = {
      ...makeEvent(1, Date.parse(`${d1}T23:50:00Z`)),
      identifiers: [{ type: 'email', value: 'm@x.example' }],
    };
    const cols = emptyColumns();
    appendEventRows(cols, Buffer.from(HMAC_KEY), e, {
      eventTime: Date.parse(`${d2}T00:00:00Z`) - 10,
      partition: 0,
      offset: 7000n,
      source: 'exporter',
    });
    await store.put(
      exporterFileKey(prefix, d1, TOPIC, 0, 7000n, 7000n),
      encodeParquet(cols),
      'application/vnd.apache.parquet',
    );
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, SCHEMAS_SQL);
      await insertSent(db.pool, e, new Date(Date.parse(`${d2}T00:00:00Z`) + 10));
      const r = await backfillDays({
        db: db.pool,
        store,
        prefix,
        topic: TOPIC,
        hmacKey: Buffer.from(HMAC_KEY),
        from: d1,
        to: d2,
        nowMs: Date.now(),
        graceMs: 1000,
      });
      assert.deepEqual(
        r.map((x) => [x.dt, x.events]),
        [
          [d1, 0],
          [d2, 1],
        ],
      );
    } finally {
      await db.drop();
    }
  });

  it('a backfill that cannot reach the database leaves the day as it was, _SUCCESS included', async () => {
    const dt = '2001-08-03';
    await sealedDay(dt, 5);
    const sealed = await dayState(dt);
    assert.ok(sealed.objects.some((o) => o.startsWith('_SUCCESS')));
    const io = { stdout: new PassThrough(), stderr: new PassThrough() };
    let stderr = '';
    io.stderr.on('data', (d) => (stderr += d));
    const unreachable = { ...env, DATABASE_URL: 'postgres://erasure:erasure@127.0.0.1:1/erasure' };
    for (const more of [[], ['--allow-fewer']]) {
      const code = await runCli(
        ['dataset', 'backfill', '--from', dt, '--to', dt, '--force', ...more],
        unreachable,
        io,
      );
      assert.equal(code, 1, stderr);
      assert.match(stderr, /ECONNREFUSED/);
      assert.deepEqual(await dayState(dt), sealed, more.join(' '));
    }
  });

  it('a glob reader that waits for _SUCCESS reads each row once: compaction removes it, the sweep writes it once replaced files are gone', async () => {
    const dt = '2001-07-03';
    const t = Date.now();
    const es = await putExporterFiles(dt, 3, 10);
    await store.put(`${prefix}/dt=${dt}/_SUCCESS`, '', 'application/octet-stream'); // from an earlier state
    const r = await compactDay({ store, prefix, topic: TOPIC, dt, nowMs: t, graceMs: 3_600_000 });
    assert.equal(r.rows, 30);
    const names = await namesIn(dt);
    assert.ok(
      names.some((n) => n.startsWith('part-')),
      'replaced files stay for the grace period',
    );
    assert.ok(!names.includes('_SUCCESS'), 'no _SUCCESS beside the replaced files');
    assert.deepEqual(await globRead(dt), { ready: false });

    // Within the grace period a sweep changes nothing; after it, the files go and _SUCCESS comes.
    assert.equal((await sweepDay({ store, prefix, dt, nowMs: t + 60_000 })).deleted, 0);
    assert.ok(!(await namesIn(dt)).includes('_SUCCESS'));
    const swept = await sweepDay({ store, prefix, dt, nowMs: t + 3_600_000 });
    assert.deepEqual([swept.deleted, swept.pending, swept.success], [3, 0, true]);
    assert.deepEqual(await namesIn(dt), ['_SUCCESS', '_manifest.json', 'compacted-g000001-0001.parquet']);
    assert.deepEqual((await readManifest(store, prefix, dt))!.superseded, []);
    assert.deepEqual(await globRead(dt), { ready: true, rows: 30, distinct: 30 });
    const read = await readDataset(prefix, { days: [dt], eventIds: es.map((e) => e.eventId) });
    assert.equal(read.rows.length, 30, 'manifest readers unaffected');
  });

  it('each daily compaction sweeps the days before it: their replaced files go once due', async () => {
    const [d1, d2] = ['2001-07-10', '2001-07-11'];
    const t = Date.now();
    await putExporterFiles(d1, 2, 5);
    await putExporterFiles(d2, 2, 5, TOPIC, 100);
    await compactDay({ store, prefix, topic: TOPIC, dt: d1, nowMs: t, graceMs: 3_600_000 });
    assert.ok((await namesIn(d1)).some((n) => n.startsWith('part-')));
    // The next day's compaction, a day later: d1's replaced files are past their grace period.
    const r = await compactDay({
      store,
      prefix,
      topic: TOPIC,
      dt: d2,
      nowMs: t + 86_400_000,
      graceMs: 3_600_000,
    });
    assert.deepEqual(await namesIn(d1), ['_SUCCESS', '_manifest.json', 'compacted-g000001-0001.parquet']);
    assert.deepEqual((await readManifest(store, prefix, d1))!.superseded, []);
    assert.equal(r.swept.length, 8, 'its own day and the 7 before');
    assert.deepEqual(
      r.swept.map((x) => [x.dt, x.deleted]).filter(([, n]) => n),
      [[d1, 2]],
    );
    assert.ok(
      !(await namesIn(d2)).includes('_SUCCESS'),
      "d2's own replaced files are still in their grace period",
    );
  });

  it('erasure dataset sweep deletes due replaced files, also those a backfill carried over', async () => {
    const [d1, d2] = ['2001-07-20', '2001-07-21'];
    const past = Date.now() - 2 * 3_600_000;
    await putExporterFiles(d1, 2, 5);
    await putExporterFiles(d2, 2, 5, TOPIC, 100);
    for (const dt of [d1, d2])
      await compactDay({ store, prefix, topic: TOPIC, dt, nowMs: past, graceMs: 3_600_000, sweepDays: 0 });
    const db = await createTestDatabase();
    try {
      await migrate(db.pool, SCHEMAS_SQL);
      // d2 rebuilt by a backfill now: the exporter files compaction superseded (due) are
      // carried over into the backfill's manifest and deleted by its sweep. The request store
      // is empty, so the day's 10 events go: only allowFewer lets a backfill drop them.
      const [b] = await backfillDays({
        db: db.pool,
        store,
        prefix,
        topic: TOPIC,
        hmacKey: Buffer.from(HMAC_KEY),
        from: d2,
        to: d2,
        nowMs: Date.now(),
        graceMs: 1000,
        allowFewer: true,
      });
      assert.deepEqual([b!.deleted, b!.pending], [2, 1], 'the exporter files go; compacted-g1 waits');
      assert.deepEqual(await namesIn(d2), ['_manifest.json', 'compacted-g000001-0001.parquet']);
    } finally {
      await db.drop();
    }
    await sleep(1100);
    const io = { stdout: new PassThrough(), stderr: new PassThrough() };
    let stdout = '';
    let stderr = '';
    io.stdout.on('data', (d) => (stdout += d));
    io.stderr.on('data', (d) => (stderr += d));
    const code = await runCli(['dataset', 'sweep', '--from', d1, '--to', d2], env, io);
    assert.equal(code, 0, stderr);
    assert.match(
      stdout,
      /2 sealed day\(s\) swept, 3 superseded file\(s\) deleted, 0 pending, _SUCCESS on 2 day\(s\)/,
    );
    assert.match(stderr, /sweep 2001-07-20: 2 superseded file\(s\) deleted/);
    assert.deepEqual(await namesIn(d1), ['_SUCCESS', '_manifest.json', 'compacted-g000001-0001.parquet']);
    assert.deepEqual(await namesIn(d2), ['_SUCCESS', '_manifest.json']);
    assert.equal(await runCli(['dataset', 'sweep', '--date', 'soon'], env, io), 2);
  });

  it('compaction stops, exit 1 and one line, when a file the manifest lists is missing', async () => {
    const dt = '2001-07-25';
    await putExporterFiles(dt, 2, 5);
    await compactDay({ store, prefix, topic: TOPIC, dt, nowMs: Date.now(), graceMs: 3_600_000 });
    await store.delete([`${prefix}/dt=${dt}/compacted-g000001-0001.parquet`]);
    await putExporterFiles(dt, 1, 5, TOPIC, 50); // late records: a new generation would be written
    const io = { stdout: new PassThrough(), stderr: new PassThrough() };
    let stderr = '';
    io.stderr.on('data', (d) => (stderr += d));
    const code = await runCli(['dataset', 'compact', '--date', dt, '--force'], env, io);
    assert.equal(code, 1);
    const lines = stderr.trim().split('\n');
    assert.equal(lines.length, 1, stderr);
    assert.match(lines[0]!, /compacted-g000001-0001\.parquet .*missing/);
    assert.equal((await readManifest(store, prefix, dt))!.generation, 1, 'the manifest stands');
  });

  it('compact reads EXPORTER_TOPIC, as the exporter does', async () => {
    const dt = '2001-07-27';
    const topic = `${TOPIC}.bench-copy`;
    await putExporterFiles(dt, 2, 5, topic);
    const io = { stdout: new PassThrough(), stderr: new PassThrough() };
    let stdout = '';
    io.stdout.on('data', (d) => (stdout += d));
    const code = await runCli(
      ['dataset', 'compact', '--date', dt, '--force'],
      { ...env, EXPORTER_TOPIC: topic },
      io,
    );
    assert.equal(code, 0);
    assert.match(stdout, /generation 1, 1 file\(s\), 10 rows from 2 input file\(s\)/);
    assert.equal((await readManifest(store, prefix, dt))!.coverage.topic, topic);
  });
});
