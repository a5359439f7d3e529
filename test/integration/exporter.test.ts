// The exporter against the real stack: events produced to privacy.erasure.requested.v1 with
// the Avro codec, Parquet files on S3 under this file's own DATASET_PREFIX, read back with
// pyarrow from the S3 endpoint. Consumer groups are new per test and positioned at this
// file's own start offsets (the topic is shared with other tests and old benchmark data).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import avro from 'avsc';
import type { Producer } from 'kafkajs';
import { Registry } from 'prom-client';
import { loadExporterConfig, start } from '../../services/exporter/index.ts';
import { createDatasetStore } from '../../services/shared/dataset/dataset-store.ts';
import { identifierHmac } from '../../services/shared/dataset/dataset-schema.ts';
import { MANIFEST_FORMAT_VERSION, writeManifest } from '../../services/shared/dataset/manifest.ts';
import { baseName, parseExporterFileName } from '../../services/shared/dataset/object-keys.ts';
import { createEventCodec, TOPICS, type RequestedEvent } from '../../services/shared/event-codec.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { REPO_ROOT } from '../../scripts/stack/stack-config.ts';
import { readDataset } from '../helpers/dataset-reader.ts';
import { infra, positionNewGroup, testKafka, testS3, topicEnd, uniqueName } from '../helpers/infra.ts';

const TOPIC = TOPICS.requested;
const HMAC_KEY = 'exporter-test-dataset-hmac-key-0123456789';
const DAY1 = Date.UTC(2001, 1, 3, 23, 59, 0); // events straddle midnight: two dt directories
const quiet = () => createLogger({ service: 'exporter', level: 'error' });
/** What an exporter counted in erasure_dataset_events_total under `result` (0 if nothing). */
const eventsCounted = async (registry: Registry, result: string) =>
  (await registry.getSingleMetric('erasure_dataset_events_total')!.get()).values.find(
    (v) => v.labels['result'] === result,
  )?.value ?? 0;

describe('exporter', () => {
  const prefix = `test/${uniqueName('exporter')}`;
  const codec = createEventCodec(infra.schemaRegistryUrl);
  const kafka = testKafka();
  const s3 = testS3();
  const store = createDatasetStore(s3, infra.s3.bucket);
  let producer: Producer;
  let startOffsets: { partition: number; offset: string }[];
  let endOffsets: { partition: number; offset: string }[];
  const events: RequestedEvent[] = [];

  const env = (group: string, extra: Record<string, string> = {}) => ({
    ...process.env,
    DATASET_PREFIX: prefix,
    DATASET_HMAC_KEY: HMAC_KEY,
    EXPORTER_GROUP: group,
    EXPORTER_MAX_FILE_ROWS: '25',
    EXPORTER_MAX_FILE_AGE_MS: '400',
    EXPORTER_ROW_GROUP_ROWS: '10',
    LOG_LEVEL: 'error',
    ...extra,
  });

  /** Waits until the group has committed up to the end offsets taken after producing. */
  async function caughtUp(
    group: string,
    timeoutMs = 40_000,
    ends = endOffsets,
    topic: string = TOPIC,
  ): Promise<void> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const t0 = Date.now();
      for (;;) {
        const [c] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
        const committed = new Map(c!.partitions.map((p) => [p.partition, BigInt(p.offset)]));
        if (ends.every((e) => (committed.get(e.partition) ?? -1n) >= BigInt(e.offset))) return;
        if (process.env['DEBUG_EXPORTER_TEST'])
          process.stderr.write(`${group} ${(Date.now() - t0) / 1000}s\n`);
        if (Date.now() - t0 > timeoutMs) throw new Error(`group ${group} did not catch up`);
        await sleep(200);
      }
    } finally {
      await admin.disconnect();
    }
  }

  /** The group's committed offset of each partition of the topic, in partition order. */
  async function committedOffsets(group: string): Promise<{ partition: number; offset: string }[]> {
    const admin = kafka.admin();
    await admin.connect();
    try {
      const [c] = await admin.fetchOffsets({ groupId: group, topics: [TOPIC] });
      return c!.partitions
        .map((p) => ({ partition: p.partition, offset: p.offset }))
        .sort((a, b) => a.partition - b.partition);
    } finally {
      await admin.disconnect();
    }
  }

  /** Exactly the produced events, each identifier once: no duplicate, no gap. */
  async function assertExactlyOnce(under = prefix): Promise<Awaited<ReturnType<typeof readDataset>>> {
    const read = await readDataset(under, { eventIds: events.map((e) => e.eventId) });
    const seen = new Map<string, number>();
    for (const r of read.rows) {
      const k = `${r.event_id}/${r.identifier_type}/${r.identifier_value}`;
      seen.set(k, (seen.get(k) ?? 0) + 1);
    }
    const expected = events.flatMap((e) => e.identifiers.map((i) => `${e.eventId}/${i.type}/${i.value}`));
    const dups = [...seen].filter(([, n]) => n > 1).map(([k]) => k);
    const missing = expected.filter((k) => !seen.has(k));
    assert.deepEqual(dups, [], 'no row twice');
    assert.deepEqual(missing, [], 'no row missing');
    assert.equal(read.rows.length, expected.length);
    return read;
  }

  before(async () => {
    producer = kafka.producer({ idempotent: true });
    await producer.connect();
    startOffsets = await topicEnd(TOPIC);
    const messages = [];
    for (let i = 0; i < 120; i++) {
      const ids = [{ type: 'user_id', value: `u-${i}-${randomUUID().slice(0, 8)}` }];
      if (i % 2 === 0)
        ids.push({ type: 'email', value: `person${i}.${randomUUID().slice(0, 6)}@example.org` });
      if (i % 7 === 0) ids.push({ type: 'phone', value: `+4420${String(1000000 + i)}` });
      const e: RequestedEvent = {
        eventId: randomUUID(),
        requestId: randomUUID(),
        identifiers: ids,
        reason: i % 3 === 0 ? 'ccpa' : 'gdpr_art17',
        requestedAt: DAY1 - 60_000 + i,
        targets: ['orders'],
        priority: 'normal',
        notBefore: null,
        deadline: DAY1 + 30 * 86_400_000,
        redelivery: i % 10 === 0 ? { attempt: 2, target: 'orders' } : null,
      };
      events.push(e);
      messages.push({
        key: e.requestId,
        value: await codec.encode(TOPIC, e),
        timestamp: String(DAY1 + i * 1000), // 60 events on each side of midnight
      });
    }
    for (let i = 0; i < messages.length; i += 40)
      await producer.send({ topic: TOPIC, messages: messages.slice(i, i + 40) });
    endOffsets = await topicEnd(TOPIC);
  });

  after(async () => {
    await producer.disconnect();
    const objects = [
      ...(await store.list(`${prefix}/`)),
      ...(await store.list(`${prefix}-caught-up/`)),
      ...(await store.list(`${prefix}-evolved/`)),
    ];
    await store.delete(objects.map((o) => o.key));
    s3.destroy();
  });

  it('killed between upload and offset commit, then restarted: every row once, no gap', async () => {
    const group = uniqueName('exporter-crash');
    await positionNewGroup(group, TOPIC, startOffsets);
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/exporter-child.ts'], {
      cwd: REPO_ROOT,
      env: env(group, { CRASH_AFTER_UPLOADS: '3' }),
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    assert.equal(exit.signal, 'SIGKILL', 'the child died in the window, by its own hand');

    // The crash left at least one object whose records are not committed.
    const committed = new Map((await committedOffsets(group)).map((p) => [p.partition, BigInt(p.offset)]));
    const files = (await store.list(`${prefix}/`))
      .map((o) => parseExporterFileName(baseName(o.key)))
      .filter((f) => f);
    assert.ok(
      files.some((f) => f!.last >= (committed.get(f!.partition) ?? -1n)),
      'some durable file is past its partition’s committed offset',
    );

    const registry = new Registry();
    const exporter = await start(loadExporterConfig(env(group)), quiet(), { registry });
    try {
      await caughtUp(group);
    } finally {
      await exporter.stop();
    }
    assert.ok(
      (await eventsCounted(registry, 'already_durable')) > 0,
      'the restart skipped records the crashed run had made durable',
    );
    await assertExactlyOnce();
  });

  it('replay of the whole range by a new group writes nothing twice', async () => {
    const group = uniqueName('exporter-replay');
    await positionNewGroup(group, TOPIC, startOffsets);
    const before = new Set((await store.list(`${prefix}/`)).map((o) => o.key));
    const exporter = await start(loadExporterConfig(env(group)), quiet());
    try {
      await caughtUp(group);
    } finally {
      await exporter.stop();
    }
    const ours = new Set(events.map((e) => e.eventId));
    const read = await assertExactlyOnce();
    assert.ok(read.rows.every((r) => ours.has(r.event_id)));
    // Files of this test's days were all there before the replay.
    const added = (await store.list(`${prefix}/`)).filter(
      (o) => !before.has(o.key) && /dt=2001-02-0[34]/.test(o.key),
    );
    assert.deepEqual(added, []);
  });

  it('writes the documented schema, readable by pyarrow, and a warehouse join finds exactly the rows to purge', async () => {
    const read = await readDataset(prefix, { eventIds: events.map((e) => e.eventId) });
    assert.equal(read.types['requested_at'], 'timestamp[ms, tz=UTC]');
    assert.equal(read.types['event_time'], 'timestamp[ms, tz=UTC]');
    assert.equal(read.types['identifier_hmac'], 'fixed_size_binary[32]');
    assert.equal(read.types['kafka_offset'], 'int64');
    assert.deepEqual(Object.keys(read.days).sort().slice(0, 2), ['2001-02-03', '2001-02-04']);
    const byId = new Map(events.map((e) => [e.eventId, e]));
    for (const r of read.rows) {
      const e = byId.get(r.event_id)!;
      assert.equal(r.request_id, e.requestId);
      assert.equal(r.reason, e.reason);
      assert.equal(r.requested_at, e.requestedAt);
      assert.equal(r.dt, new Date(r.event_time).toISOString().slice(0, 10));
      assert.equal(r.redelivery_target, e.redelivery?.target ?? null);
      assert.equal(r.source, 'exporter');
      assert.equal(r.schema_version, 1);
      assert.equal(
        r.identifier_hmac,
        identifierHmac(Buffer.from(HMAC_KEY), r.identifier_type, r.identifier_value).toString('hex'),
      );
    }

    // Warehouse rows: some belong to erased subjects, some to others (same value, other type too).
    const warehouse = [
      ...events.slice(0, 30).map((e, i) => ({ rowId: `erased-${i}`, ...e.identifiers.at(-1)! })),
      ...events
        .slice(0, 10)
        .map((e, i) => ({ rowId: `other-type-${i}`, type: 'device_id', value: e.identifiers[0]!.value })),
      ...Array.from({ length: 20 }, (_, i) => ({
        rowId: `kept-${i}`,
        type: 'user_id',
        value: `never-erased-${i}`,
      })),
    ];
    const joined = await readDataset(prefix, {
      warehouse,
      hmacKey: HMAC_KEY,
      days: ['2001-02-03', '2001-02-04'],
    });
    const expected = warehouse
      .filter((w) => w.rowId.startsWith('erased-'))
      .map((w) => w.rowId)
      .sort();
    assert.ok(!Array.isArray(joined.purge));
    assert.deepEqual(joined.purge.byValue, expected, 'join on (type, value)');
    assert.deepEqual(joined.purge.byHmac, expected, 'join on the keyed hash');
  });

  it('a caught-up partition rolls a backlog at once; a trickle after it waits for its age', async () => {
    // Ten-minute age and a threshold above any file here: only the backlog rule can make
    // rows durable within the test.
    const own = `${prefix}-caught-up`;
    const group = uniqueName('exporter-caught-up');
    await positionNewGroup(group, TOPIC, startOffsets);
    const exporter = await start(
      loadExporterConfig(
        env(group, {
          DATASET_PREFIX: own,
          EXPORTER_MAX_FILE_ROWS: '1000000',
          EXPORTER_MAX_FILE_AGE_MS: '600000',
          EXPORTER_CAUGHT_UP_ROLL_ROWS: '100000',
        }),
      ),
      quiet(),
    );
    const trickle: RequestedEvent[] = [];
    try {
      await caughtUp(group, 20_000);
      const backlogFiles = (await store.list(`${own}/`)).length;
      assert.ok(backlogFiles > 0);
      // Now a trickle, one event per partition key at a time, after the partitions caught up.
      for (let i = 0; i < 4; i++) {
        const e: RequestedEvent = { ...events[i]!, eventId: randomUUID(), requestId: randomUUID() };
        trickle.push(e);
        await producer.send({
          topic: TOPIC,
          messages: [{ key: e.requestId, value: await codec.encode(TOPIC, e), timestamp: String(DAY1) }],
        });
      }
      const trickleEnd = await topicEnd(TOPIC);
      await assert.rejects(caughtUp(group, 3_000, trickleEnd), /did not catch up/, 'the trickle waits');
      assert.equal((await store.list(`${own}/`)).length, backlogFiles, 'no file for the trickle yet');
    } finally {
      await exporter.stop(); // flushes on stop
    }
    const read = await readDataset(own, { eventIds: [...events, ...trickle].map((e) => e.eventId) });
    assert.equal(
      read.rows.length,
      [...events, ...trickle].reduce((n, e) => n + e.identifiers.length, 0),
    );
  });

  it('warns about records for a day that was sealed while its assignment lived', async () => {
    const own = `${prefix}-late`;
    const group = uniqueName('exporter-late');
    await positionNewGroup(group, TOPIC, await topicEnd(TOPIC));
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => lines.push(d.toString('utf8')));
    const exporter = await start(
      loadExporterConfig(env(group, { DATASET_PREFIX: own })),
      createLogger({ service: 'exporter', level: 'warn', stream }),
      { manifestRecheckMs: 0 },
    );
    const day = Date.UTC(2001, 5, 1, 12, 0, 0);
    const key = randomUUID(); // one key: one partition, one assignment throughout
    const send = async (at: number) => {
      const e: RequestedEvent = { ...events[1]!, eventId: randomUUID(), requestId: key };
      await producer.send({
        topic: TOPIC,
        messages: [{ key, value: await codec.encode(TOPIC, e), timestamp: String(at) }],
      });
      await caughtUp(group, 20_000, await topicEnd(TOPIC));
    };
    try {
      await send(day);
      assert.ok(!lines.join('').includes('WARN_EXPORTER_LATE_EVENT'), 'the day was open');
      // Compaction seals the day (a manifest, here written by hand); then a late record.
      await writeManifest(store, own, {
        formatVersion: MANIFEST_FORMAT_VERSION,
        schemaVersion: 1,
        dt: '2001-06-01',
        generation: 1,
        writtenBy: 'compaction',
        writtenAt: new Date().toISOString(),
        files: [],
        rows: 0,
        events: 0,
        coverage: { topic: TOPIC, partitions: {} },
        superseded: [],
      });
      // The sweep's marker: the directory's *.parquet are exactly the manifest's files.
      const marker = `${own}/dt=2001-06-01/_SUCCESS`;
      await store.put(marker, '', 'application/octet-stream');
      await send(day + 1000);
      const late = lines.filter((l) => l.includes('WARN_EXPORTER_LATE_EVENT'));
      assert.equal(late.length, 1, lines.join(''));
      assert.match(late[0]!, /"dt":"2001-06-01"/);
      const names = (await store.list(`${own}/dt=2001-06-01/`)).map((o) => baseName(o.key));
      assert.ok(names.some((n) => n.startsWith('part-')) && !names.includes('_SUCCESS'), names.join(' '));
    } finally {
      await exporter.stop();
    }
  });

  it('a batch that fails mid-way is read again from the last commit: every row once, no gap', async () => {
    const own = `${prefix}-caught-up/failed-batch`;
    const group = uniqueName('exporter-failed-batch');
    await positionNewGroup(group, TOPIC, startOffsets);
    let appended = 0;
    const registry = new Registry();
    const exporter = await start(loadExporterConfig(env(group, { DATASET_PREFIX: own })), quiet(), {
      registry,
      // Fails twice, once after some files are durable and once later: the batch's open
      // files and the queued batches are dropped and every partition is read again.
      beforeAppend: () => {
        appended++;
        if (appended === 40 || appended === 100) throw new Error('injected append failure');
      },
    });
    try {
      await caughtUp(group);
    } finally {
      await exporter.stop();
    }
    assert.ok(appended > 100, 'both failures happened');
    await assertExactlyOnce(own);
  });

  it('stopped while S3 is unreachable: commits nothing past what is durable; a restart writes every row once', async () => {
    const own = `${prefix}-caught-up/s3-down`;
    const group = uniqueName('exporter-s3-down');
    await positionNewGroup(group, TOPIC, startOffsets);
    const down = await start(
      loadExporterConfig(
        env(group, {
          DATASET_PREFIX: own,
          S3_ENDPOINT: 'http://127.0.0.1:1',
          EXPORTER_MAX_BACKOFF_MS: '300',
        }),
      ),
      quiet(),
    );
    try {
      // It joins, reads, and retries its first S3 call (the LIST of what is durable) with
      // backoff; stop() comes in the middle of that.
      await sleep(4000);
    } finally {
      await down.stop();
    }
    assert.deepEqual(
      await committedOffsets(group),
      [...startOffsets].sort((a, b) => a.partition - b.partition),
      'the group is where it was: nothing was durable',
    );

    const exporter = await start(loadExporterConfig(env(group, { DATASET_PREFIX: own })), quiet());
    try {
      await caughtUp(group);
    } finally {
      await exporter.stop();
    }
    await assertExactlyOnce(own);
  });

  it('says so, as ERR_EXPORTER_RECORDS_EXPIRED, when records were deleted from Kafka before it exported them', async () => {
    // Its own one-partition topic: deleting records of the shared one would take other tests' data.
    const topic = uniqueName('test.exporter.expired');
    const own = `${prefix}-caught-up/expired`;
    const group = uniqueName('exporter-expired');
    const admin = kafka.admin();
    await admin.connect();
    const lines: string[] = [];
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => lines.push(...d.toString('utf8').trim().split('\n')));
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
      await producer.send({
        topic,
        messages: await Promise.all(
          events.slice(0, 4).map(async (e) => ({
            key: e.requestId,
            value: await codec.encode(TOPIC, e),
            timestamp: String(DAY1),
          })),
        ),
      });
      // The group committed offset 0; then retention (here: DeleteRecords) takes records 0 and 1.
      await admin.setOffsets({ groupId: group, topic, partitions: [{ partition: 0, offset: '0' }] });
      await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '2' }] });
      const exporter = await start(
        loadExporterConfig(env(group, { DATASET_PREFIX: own, EXPORTER_TOPIC: topic })),
        createLogger({ service: 'exporter', level: 'error', stream }),
      );
      try {
        await caughtUp(group, 40_000, [{ partition: 0, offset: '4' }], topic);
      } finally {
        await exporter.stop();
      }
    } finally {
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    }
    const expired = lines.map((l) => JSON.parse(l)).filter((l) => l.code === 'ERR_EXPORTER_RECORDS_EXPIRED');
    assert.equal(expired.length, 1, lines.join('\n'));
    assert.equal(expired[0].partition, 0);
    assert.equal(expired[0].topic, topic);
    // What was still in Kafka is exported; the deleted records are not (the log says so).
    const read = await readDataset(own, { eventIds: events.map((e) => e.eventId) });
    assert.deepEqual(
      [...new Set(read.rows.map((r) => r.event_id))].sort(),
      events
        .slice(2, 4)
        .map((e) => e.eventId)
        .sort(),
    );
  });

  it('two exporters in one group split the partitions, and one takes all when the other stops: every row once', async () => {
    // Its own topic, so that the group's members are the only readers and all its records ours.
    const topic = uniqueName('test.exporter.pair');
    const own = `${prefix}-caught-up/pair`;
    const group = uniqueName('exporter-pair');
    const admin = kafka.admin();
    await admin.connect();
    // Its own producer: the shared one still targets the topic the previous test deleted,
    // and kafkajs refreshes the metadata of every targeted topic when a new one is added.
    const pairProducer = kafka.producer();
    const produce = async (slice: RequestedEvent[]) => {
      await pairProducer.send({
        topic,
        messages: await Promise.all(
          slice.map(async (e, i) => ({
            key: e.requestId,
            value: await codec.encode(TOPIC, e),
            timestamp: String(DAY1 + i * 1000),
          })),
        ),
      });
      return topicEnd(topic);
    };
    try {
      await admin.createTopics({ topics: [{ topic, numPartitions: 4 }], waitForLeaders: true });
      await pairProducer.connect();
      const cfg = loadExporterConfig(env(group, { DATASET_PREFIX: own, EXPORTER_TOPIC: topic }));
      const [ra, rb] = [new Registry(), new Registry()];
      const a = await start(cfg, quiet(), { registry: ra });
      let b: Awaited<ReturnType<typeof start>> | undefined;
      try {
        b = await start(cfg, quiet(), { registry: rb });
        // Both members in the group, each with its share, before anything is produced.
        for (let t0 = Date.now(); ; await sleep(200)) {
          const g = (await admin.describeGroups([group])).groups[0]!;
          if (g.state === 'Stable' && g.members.length === 2) break;
          if (Date.now() - t0 > 30_000) throw new Error(`group ${group} did not settle with 2 members`);
        }
        await caughtUp(group, 40_000, await produce(events.slice(0, 60)), topic);
        assert.ok(
          (await eventsCounted(ra, 'exported')) > 0 && (await eventsCounted(rb, 'exported')) > 0,
          'both members exported rows',
        );
        await b.stop(); // its files are durable and committed; its partitions go to the other
        b = undefined;
        await caughtUp(group, 40_000, await produce(events.slice(60)), topic);
      } finally {
        await b?.stop();
        await a.stop();
      }
    } finally {
      await pairProducer.disconnect();
      await admin.deleteTopics({ topics: [topic] }).catch(() => undefined);
      await admin.disconnect();
    }
    await assertExactlyOnce(own);
  });

  it('an event whose schema lacks a field the dataset needs is skipped as undecodable; the partition moves on', async () => {
    const own = `${prefix}-evolved`;
    const group = uniqueName('exporter-evolved');
    await positionNewGroup(group, TOPIC, await topicEnd(TOPIC));
    // A schema without `priority`, registered under a subject of its own (the decoder goes by id).
    const schema = JSON.parse(
      readFileSync(join(REPO_ROOT, 'schemas/avro/privacy.erasure.requested.v1.avsc'), 'utf8'),
    ) as { fields: { name: string }[] };
    const evolved = { ...schema, fields: schema.fields.filter((f) => f.name !== 'priority') };
    const res = await fetch(`${infra.schemaRegistryUrl}/subjects/${uniqueName('evolved')}-value/versions`, {
      method: 'POST',
      headers: { 'content-type': 'application/vnd.schemaregistry.v1+json' },
      body: JSON.stringify({ schema: JSON.stringify(evolved) }),
    });
    assert.ok(res.ok, `registry answered ${res.status}`);
    const { id } = (await res.json()) as { id: number };
    const header = Buffer.alloc(5);
    header.writeInt32BE(id, 1);
    const key = randomUUID(); // one partition: the good event comes after the bad one
    const bad: RequestedEvent = { ...events[2]!, eventId: randomUUID(), requestId: key };
    const good: RequestedEvent = { ...events[4]!, eventId: randomUUID(), requestId: key };
    await producer.send({
      topic: TOPIC,
      messages: [
        {
          key,
          value: Buffer.concat([header, avro.Type.forSchema(evolved as avro.Schema).toBuffer(bad)]),
          timestamp: String(DAY1),
        },
        { key, value: await codec.encode(TOPIC, good), timestamp: String(DAY1) },
      ],
    });
    const registry = new Registry();
    const exporter = await start(loadExporterConfig(env(group, { DATASET_PREFIX: own })), quiet(), {
      registry,
    });
    try {
      await caughtUp(group, 20_000, await topicEnd(TOPIC));
    } finally {
      await exporter.stop();
    }
    assert.equal(await eventsCounted(registry, 'undecodable'), 1);
    const read = await readDataset(own, { eventIds: [bad.eventId, good.eventId] });
    assert.deepEqual(
      [...new Set(read.rows.map((r) => r.event_id))],
      [good.eventId],
      'the good event is exported, the bad one skipped',
    );
  });
});
