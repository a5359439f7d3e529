// The relay's producer after a send that failed although the broker may have appended it
// (the answer lost, every retry timed out): kafkajs 2.2.4 rolls that partition's sequence
// number back and keeps the producer id, so the next send reused the sequence range and was
// acknowledged as a DUPLICATE without being written (rows marked sent, not in Kafka), or
// failed OUT_OF_ORDER_SEQUENCE_NUMBER for good. Real Postgres, Kafka and registry; a lost
// answer is simulated by wrapping kafkajs' Broker.prototype.produce (appended, then throws).
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, beforeEach, describe, it } from 'node:test';
import { Kafka, logLevel, type Admin, type Consumer, type Producer } from 'kafkajs';
import { migrate } from '../../services/shared/db/migrate.ts';
import { createEventCodec, TOPICS, toRequestedEvent } from '../../services/shared/event-codec.ts';
import { registerSchemas } from '../../services/shared/event-log.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { RELAY_PRODUCER_CONFIG } from '../../services/relay/index.ts';
import { createPartitionLookup } from '../../packages/partner-sdk/src/partition-lookup.ts';
import { createProducerHolder, type ManagedProducer } from '../../services/relay/producer-holder.ts';
import { createRelay } from '../../services/relay/relay-loop.ts';
import { createRelayMetrics, type RelayMetrics } from '../../services/relay/relay-metrics.ts';
import { SCHEMAS_SQL } from '../helpers/api.ts';
import { insertRequestedRow } from '../helpers/outbox.ts';
import { createTestDatabase, infra, testKafka, uniqueName } from '../helpers/infra.ts';

const SCHEMAS = join(import.meta.dirname, '..', '..', 'schemas');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const require = createRequire(import.meta.url);
// kafkajs' own Broker class (the instance `import 'kafkajs'` uses: one CommonJS module cache).
const Broker = require('kafkajs/src/broker/index.js') as { prototype: { produce: (...a: any[]) => any } };
const { KafkaJSConnectionError } = require('kafkajs/src/errors.js') as {
  KafkaJSConnectionError: new (message: string) => Error;
};

/**
 * While `lose` is set, produce requests to `topic` reach the broker (which appends them) and
 * then fail as if the connection dropped before the answer: kafkajs retries, and every retry
 * fails the same way. `restore()` puts kafkajs back.
 */
function loseAnswersFor(topic: string) {
  const original = Broker.prototype.produce;
  const control = {
    lose: false,
    restore: () => {
      Broker.prototype.produce = original;
    },
  };
  Broker.prototype.produce = async function (this: unknown, ...args: any[]) {
    const res = await original.apply(this, args);
    const topics: string[] = (args[0]?.topicData ?? []).map((t: { topic: string }) => t.topic);
    if (control.lose && topics.includes(topic))
      throw new KafkaJSConnectionError('Connection closed (simulated lost answer)');
    return res;
  };
  return control;
}

describe('outbox relay: a failed send replaces the producer', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let kafka: Kafka;
  let admin: Admin;
  let consumer: Consumer;
  /** A one-partition topic of its own, so every send lands on the partition that failed. */
  const topic = `${uniqueName('relayreset')}.${TOPICS.requested}`;
  const codec = createEventCodec(infra.schemaRegistryUrl);
  /** eventIds read back from the topic, in log order. */
  const inLog: string[] = [];
  const logChunks: string[] = [];
  const logStream = new PassThrough();
  logStream.on('data', (d: Buffer) => logChunks.push(d.toString('utf8')));
  const logger = createLogger({ service: 'relay', level: 'debug', stream: logStream });
  const secrets: string[] = [];

  const insertRequested = () => insertRequestedRow(db.pool, { topic, secrets });
  const statusOf = async (id: string) =>
    (await db.pool.query(`SELECT status FROM outbox WHERE id = $1`, [id])).rows[0].status as string;
  async function waitFor(what: string, pred: () => boolean | Promise<boolean>, timeoutMs = 15_000) {
    for (const until = Date.now() + timeoutMs; !(await pred()); await sleep(50))
      assert.ok(Date.now() < until, `timed out waiting for ${what}`);
  }

  /** A relay whose rows back off for a minute after a failed send, unless `backoffMs` says otherwise. */
  function relayWith(producers: ManagedProducerSource, metrics: RelayMetrics, backoffMs = 60_000) {
    const producer = createProducerHolder({ create: producers, logger, metrics });
    const relay = createRelay({
      pool: db.pool,
      logger,
      metrics,
      random: () => 0.99,
      options: {
        owner: uniqueName('relay-reset'),
        batchSize: 10,
        leaseMs: 30_000,
        pollIntervalMs: 50,
        backoff: { initialMs: backoffMs, maxMs: 2 * backoffMs, multiplier: 2 },
      },
      publish: {
        producer,
        codec,
        partitions: createPartitionLookup(admin),
        encoders: { [topic]: toRequestedEvent },
      },
    });
    return { relay, producer };
  }
  type ManagedProducerSource = () => ManagedProducer;
  const realProducer = () => kafka.producer({ ...RELAY_PRODUCER_CONFIG });
  const resets = async (metrics: RelayMetrics) => (await metrics.producerResets.get()).values[0]?.value ?? 0;

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, SCHEMAS_SQL);
    kafka = testKafka();
    admin = kafka.admin();
    await admin.connect();
    await admin.createTopics({ topics: [{ topic, numPartitions: 1 }], waitForLeaders: true });
    const dir = await mkdtemp(join(tmpdir(), 'relay-reset-avro-'));
    await copyFile(join(SCHEMAS, 'avro', `${TOPICS.requested}.avsc`), join(dir, `${topic}.avsc`));
    await registerSchemas(infra.schemaRegistryUrl, dir);
    await rm(dir, { recursive: true });
    consumer = kafka.consumer({ groupId: uniqueName('relay-reset') });
    await consumer.connect();
    await consumer.subscribe({ topics: [topic], fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        inLog.push(((await codec.decode(message.value!)) as { eventId: string }).eventId);
      },
    });
  });
  after(async () => {
    await consumer?.disconnect();
    await admin?.deleteTopics({ topics: [topic] }).catch(() => undefined);
    await admin?.disconnect();
    await db?.drop();
  });
  beforeEach(async () => {
    await db.pool.query('DELETE FROM outbox');
  });

  it('(a) the next send of as many records is written, not answered as a duplicate of the lost one', async () => {
    const metrics = createRelayMetrics();
    const { relay, producer } = relayWith(realProducer, metrics);
    const lost = loseAnswersFor(topic);
    try {
      await producer.connect();
      const first = await insertRequested();
      lost.lose = true;
      assert.equal((await relay.runOnce()).publishFailed, true);
      lost.lose = false;
      // The first row backs off for a minute; the next send carries one other row, the same
      // record count on the same partition: the sequence range the lost answer had.
      const second = await insertRequested();
      assert.deepEqual(await relay.runOnce(), { claimed: 1, published: 1, failed: 0, publishFailed: false });
      assert.equal(await statusOf(second.id), 'sent');
      await waitFor('the row marked sent to be in Kafka', () => inLog.includes(second.eventId));
      assert.ok(inLog.includes(first.eventId), 'the lost answer was for a record the broker did append');
      assert.equal(
        await statusOf(first.id),
        'pending',
        'and its row is published again later (at least once)',
      );
      assert.equal(await resets(metrics), 1, 'the failed send discarded its producer');
    } finally {
      lost.restore();
      await producer.disconnect();
    }
  });

  it('(b) the next send of another record count is not refused OUT_OF_ORDER_SEQUENCE_NUMBER for good', async () => {
    const metrics = createRelayMetrics();
    const { relay, producer } = relayWith(realProducer, metrics);
    const lost = loseAnswersFor(topic);
    try {
      await producer.connect();
      await insertRequested();
      lost.lose = true;
      assert.equal((await relay.runOnce()).publishFailed, true);
      lost.lose = false;
      const next = [await insertRequested(), await insertRequested()];
      assert.deepEqual(await relay.runOnce(), { claimed: 2, published: 2, failed: 0, publishFailed: false });
      await waitFor('both rows in Kafka', () => next.every((r) => inLog.includes(r.eventId)));
      assert.equal(await resets(metrics), 1);
    } finally {
      lost.restore();
      await producer.disconnect();
    }
  });

  it('(c) a replacement that cannot connect is retried by the loop with backoff; stop disconnects the current producer', async () => {
    const metrics = createRelayMetrics();
    const unreachable = new Kafka({
      clientId: uniqueName('relay-unreachable'),
      brokers: ['127.0.0.1:1'],
      logLevel: logLevel.NOTHING,
      retry: { retries: 0 },
    });
    const lost = loseAnswersFor(topic);
    const created: { producer: Producer; disconnected: boolean }[] = [];
    const { relay, producer } = relayWith(
      () => {
        // The first producer's sends lose their answers; its replacement finds Kafka
        // unreachable; the one after that connects.
        const real = created.length !== 1;
        if (created.length === 1) lost.lose = false;
        const p = (real ? kafka : unreachable).producer({ ...RELAY_PRODUCER_CONFIG });
        const entry = { producer: p, disconnected: false };
        p.on(p.events.DISCONNECT, () => {
          entry.disconnected = true;
        });
        created.push(entry);
        return p;
      },
      metrics,
      200,
    );
    try {
      await producer.connect();
      const row = await insertRequested();
      lost.lose = true;
      relay.start();
      await waitFor('the row to be sent', async () => (await statusOf(row.id)) === 'sent', 30_000);
      await waitFor('the row in Kafka', () => inLog.includes(row.eventId));
      assert.equal(created.length, 3, 'the lost answer, the failed reconnect, then a producer that sent');
      assert.equal(created[0]!.disconnected, true, 'the failed producer was disconnected');
      assert.equal(await resets(metrics), 1);
      const failures = (await metrics.publishFailures.get()).values.find(
        (v) => v.labels.code === 'ERR_RELAY_PUBLISH',
      );
      assert.equal(failures?.value, 2, 'the lost answer and the failed reconnect, each a failed publish');
      await relay.stop();
      await producer.disconnect();
      assert.equal(created[2]!.disconnected, true, 'stop disconnected the producer current at the time');
      await assert.rejects(
        producer.run((p) => p.sendBatch({ topicMessages: [] })),
        /disconnected/,
      );
    } finally {
      lost.restore();
      await relay.stop();
      await producer.disconnect();
    }
  });

  it('logs each replacement with its code, and never an identifier value', () => {
    const logs = logChunks.join('');
    const resetLines = logs.split('\n').filter((l) => l.includes('WARN_RELAY_PRODUCER_RESET'));
    assert.equal(resetLines.length, 3);
    assert.ok(resetLines.every((l) => JSON.parse(l).level === 'warn'));
    for (const v of secrets) assert.ok(!logs.includes(v), 'an identifier value reached the log');
  });
});
