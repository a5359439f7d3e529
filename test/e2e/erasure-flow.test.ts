// The whole flow against the real stack: intake API → outbox → relay → Kafka → the two example
// partners (the SDK) → acks → ack consumer → completed request and completed event.
// The contract's topics are shared with other test files and the dev stack, so everything this
// file names is unique per run: targets (partners skip events for other targets), consumer
// groups, the partners' database and topic, the subjects.
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Consumer } from 'kafkajs';
import pg from 'pg';
import {
  loadOrdersPartnerConfig,
  start as startOrders,
  type RunningOrdersPartner,
} from '../../services/example-partner-orders/index.ts';
import {
  loadProfilesPartnerConfig,
  start as startProfiles,
  type RunningProfilesPartner,
} from '../../services/example-partner-profiles/index.ts';
import { startServices } from '../../services/main.ts';
import { claimOutboxBatch } from '../../services/relay/claim-outbox-batch.ts';
import { loadRelayConfig, start as startRelay } from '../../services/relay/index.ts';
import { createPartitionLookup } from '../../packages/partner-sdk/src/partition-lookup.ts';
import { publishBatch } from '../../services/relay/publish-batch.ts';
import { migrate } from '../../services/shared/db/migrate.ts';
import { createEventCodec, TOPICS, type CompletedEvent } from '../../services/shared/event-codec.ts';
import { ensureTopics, loadTopicDefinitions, registerSchemas } from '../../services/shared/event-log.ts';
import { createLogger } from '../../services/shared/logger.ts';
import type { RunningService } from '../../services/shared/service-group.ts';
import { SCHEMAS_SQL } from '../helpers/api.ts';
import {
  createTestDatabase,
  infra,
  positionNewGroup,
  testKafka,
  topicEnd,
  uniqueName,
} from '../helpers/infra.ts';

const SCHEMAS = join(import.meta.dirname, '..', '..', 'schemas');
const COMPLETION_TIMEOUT_MS = 60_000;

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  timeoutMs = COMPLETION_TIMEOUT_MS,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

describe('erasure flow end to end', () => {
  const kafka = testKafka();
  const admin = kafka.admin();
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  const codec = createEventCodec(infra.schemaRegistryUrl);
  const adminToken = `adm_${randomBytes(24).toString('base64url')}`;
  const ordersTarget = uniqueName('orders-db');
  const profilesTarget = uniqueName('profiles');
  const partnerDatabase = uniqueName('partner_orders');
  const profilesTopic = uniqueName('partner.profiles.e2e');
  const partnerLogs: string[] = [];
  /**
   * The completed topic from where it ended before this run, each record's decoding by its
   * position (a redelivery is not a second event). Reading the whole shared topic instead
   * took longer every run as benchmarks and retention kept it growing.
   */
  const completedSince = new Map<string, Promise<CompletedEvent>>();
  let completedConsumer: Consumer | undefined;
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let env: NodeJS.ProcessEnv;
  let running: RunningService[] = [];
  let orders: RunningOrdersPartner;
  let profiles: RunningProfilesPartner;
  let api: string;

  const call = async (method: string, path: string, body?: unknown, headers: Record<string, string> = {}) => {
    const res = await fetch(`${api}${path}`, {
      method,
      headers: { authorization: `Bearer ${adminToken}`, 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };

  before(async () => {
    db = await createTestDatabase();
    await migrate(db.pool, SCHEMAS_SQL);
    await admin.connect();
    await ensureTopics(admin, await loadTopicDefinitions(SCHEMAS));
    await registerSchemas(infra.schemaRegistryUrl, join(SCHEMAS, 'avro'));
    await producer.connect();

    env = {
      ...process.env,
      DATABASE_URL: db.url,
      PORT: '0',
      HOST: '127.0.0.1',
      ERASURE_ADMIN_TOKEN: adminToken,
      ACK_CONSUMER_GROUP: uniqueName('e2e-acks'),
      RELAY_POLL_INTERVAL_MS: '100',
      RELAY_ID: 'e2e-relay-a',
      // Acks from other runs on the shared topic are skipped with a warning each: noise here.
      LOG_LEVEL: 'error',
    };
    // Test groups start where this run's events begin, not at the shared topics' history.
    const [acksEnd, requestedEnd, completedEnd] = await Promise.all([
      topicEnd(TOPICS.acks),
      topicEnd(TOPICS.requested),
      topicEnd(TOPICS.completed),
    ]);
    await positionNewGroup(String(env['ACK_CONSUMER_GROUP']), TOPICS.acks, acksEnd);
    const completedGroup = uniqueName('e2e-completed');
    await positionNewGroup(completedGroup, TOPICS.completed, completedEnd);
    completedConsumer = kafka.consumer({ groupId: completedGroup, maxWaitTimeInMs: 100 });
    await completedConsumer.connect();
    await completedConsumer.subscribe({ topics: [TOPICS.completed] });
    await completedConsumer.run({
      eachMessage: async ({ partition, message }) => {
        if (!message.value) return;
        const decoding = codec.decode<CompletedEvent>(message.value);
        decoding.catch(() => undefined); // a failure surfaces where the events are read
        completedSince.set(`${partition}:${message.offset}`, decoding);
      },
    });
    running = await startServices(['api', 'relay', 'ack-consumer'], env);
    api = running[0]!.url;

    for (const [name, identifierTypes] of [
      [ordersTarget, ['user_id', 'email']],
      [profilesTarget, ['user_id']],
    ] as const) {
      const res = await call('POST', '/v1/targets', {
        name,
        kind: 'async_event',
        identifierTypes,
        ackSlaSeconds: 3600,
      });
      assert.equal(res.status, 201, JSON.stringify(res.body));
    }

    // Partner logs are captured for the redaction check at the end.
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => partnerLogs.push(d.toString('utf8')));
    const partnerEnv = {
      ...process.env,
      LOG_LEVEL: 'debug',
      ORDERS_PARTNER_DATABASE: partnerDatabase,
      ORDERS_PARTNER_TARGET: ordersTarget,
      ORDERS_PARTNER_GROUP: uniqueName('e2e-orders'),
      PROFILES_PARTNER_TOPIC: profilesTopic,
      PROFILES_PARTNER_TARGET: profilesTarget,
      PROFILES_PARTNER_GROUP: uniqueName('e2e-profiles'),
    };
    // Positioned at the end of the requested topic as it was before this run published
    // anything: no event of this run can be missed, and no older one is read.
    await positionNewGroup(String(partnerEnv['ORDERS_PARTNER_GROUP']), TOPICS.requested, requestedEnd);
    await positionNewGroup(String(partnerEnv['PROFILES_PARTNER_GROUP']), TOPICS.requested, requestedEnd);
    orders = await startOrders(
      loadOrdersPartnerConfig(partnerEnv),
      createLogger({ service: 'orders', level: 'debug', stream }),
    );
    profiles = await startProfiles(
      loadProfilesPartnerConfig(partnerEnv),
      createLogger({ service: 'profiles', level: 'debug', stream }),
    );
  });

  after(async () => {
    await completedConsumer?.disconnect();
    await profiles?.stop();
    await orders?.stop();
    for (const r of [...running].reverse()) await r.stop().catch(() => undefined);
    await producer.disconnect();
    await admin.deleteTopics({ topics: [profilesTopic] }).catch(() => undefined);
    await admin.disconnect();
    const c = new pg.Client({ connectionString: infra.databaseUrl });
    await c.connect();
    await c.query(`DROP DATABASE IF EXISTS ${partnerDatabase} WITH (FORCE)`);
    await c.end();
    await db?.drop();
  });

  /** A subject and a bystander with data in both partners. */
  async function seedPair() {
    const subject = { userId: `subject-${randomUUID()}`, email: `s-${randomUUID()}@example.org` };
    const bystander = { userId: `bystander-${randomUUID()}`, email: `b-${randomUUID()}@example.org` };
    await orders.seed([
      { userId: subject.userId, email: subject.email, item: 'book' },
      // Matched by email alone: a partner erases by any identifier, not all of them.
      { userId: 'legacy-account', email: subject.email.toUpperCase(), item: 'lamp' },
      { userId: bystander.userId, email: bystander.email, item: 'chair' },
    ]);
    await profiles.seed([
      { userId: subject.userId, name: 'Subject' },
      { userId: bystander.userId, name: 'Bystander' },
    ]);
    return { subject, bystander };
  }

  const identifiersOf = (p: { userId: string; email: string }) => [
    { type: 'user_id', value: p.userId },
    { type: 'email', value: p.email },
  ];

  async function submit(p: { userId: string; email: string }): Promise<string> {
    const res = await call(
      'POST',
      '/v1/erasure-requests',
      { identifiers: identifiersOf(p), reason: 'gdpr_art17' },
      { 'idempotency-key': randomUUID() },
    );
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.id as string;
  }

  const waitCompleted = (id: string) =>
    waitFor(`request ${id} completed`, async () => {
      const res = await call('GET', `/v1/erasure-requests/${id}`);
      return res.body.status === 'completed' ? res.body : undefined;
    });

  const completedOutboxRows = async (id: string) =>
    (
      await db.pool.query(`SELECT status FROM outbox WHERE request_id = $1 AND topic = $2`, [
        id,
        TOPICS.completed,
      ])
    ).rows;

  async function completedEventsOnKafka(id: string): Promise<CompletedEvent[]> {
    const events = await Promise.all(completedSince.values());
    return events.filter((e) => e.requestId === id);
  }

  it('erases the subject in both partners, keeps the bystander, completes once and says so on Kafka', async () => {
    const { subject, bystander } = await seedPair();
    const id = await submit(subject);
    const done = await waitCompleted(id);

    const tasks = Object.fromEntries(done.tasks.map((t: any) => [t.target, t]));
    assert.deepEqual(Object.keys(tasks).sort(), [ordersTarget, profilesTarget].sort());
    for (const t of Object.values(tasks) as any[]) assert.equal(t.state, 'acked');
    assert.equal(tasks[ordersTarget].evidence.status, 'deleted');
    assert.deepEqual(JSON.parse(tasks[ordersTarget].evidence.detail), { rowsDeleted: 2, remaining: 0 });
    assert.equal(tasks[profilesTarget].evidence.status, 'deleted');
    assert.equal(JSON.parse(tasks[profilesTarget].evidence.detail).profilesErased, 1);
    assert.ok(done.completedAt);

    assert.equal(await orders.count(identifiersOf(subject)), 0);
    assert.equal(await orders.count(identifiersOf(bystander)), 1);
    const latest = await profiles.latest([subject.userId, bystander.userId]);
    assert.equal(latest.get(subject.userId), null);
    assert.equal(latest.get(bystander.userId)?.name, 'Bystander');

    const [event, ...more] = await waitFor('the completed event on Kafka', async () => {
      const found = await completedEventsOnKafka(id);
      return found.length > 0 ? found : undefined;
    });
    assert.equal(more.length, 0, 'one completed event');
    assert.equal(event!.status, 'completed');
    assert.deepEqual(
      event!.outcomes.map((o) => [o.target, o.state, o.outcome]).sort(),
      [
        [ordersTarget, 'acked', 'deleted'],
        [profilesTarget, 'acked', 'deleted'],
      ].sort(),
    );

    const kinds: string[] = done.journal.map((j: any) => j.kind);
    for (const step of ['request.accepted', 'task.acked', 'request.completed'])
      assert.ok(kinds.includes(step), `journal has ${step}: ${kinds.join(', ')}`);
    assert.equal(kinds.filter((k) => k === 'task.acked').length, 2);
    assert.equal((await completedOutboxRows(id)).length, 1);

    const logs = partnerLogs.join('');
    for (const value of [subject.userId, subject.email, bystander.userId, bystander.email])
      assert.ok(!logs.toLowerCase().includes(value.toLowerCase()), 'no identifier value in partner logs');
  });

  it('the same event delivered twice changes nothing', async () => {
    const { subject } = await seedPair();
    const id = await submit(subject);
    const first = await waitCompleted(id);
    const duplicatesBefore = [orders.stats().duplicates, profiles.stats().duplicates];
    // The same outbox payload again (same eventId): what a relay retry or a replay delivers.
    await db.pool.query(
      `INSERT INTO outbox (topic, event_key, payload, request_id)
         SELECT topic, event_key, payload, request_id FROM outbox WHERE request_id = $1 AND topic = $2`,
      [id, TOPICS.requested],
    );
    await waitFor('the copy to be published', async () => {
      const { rows } = await db.pool.query(
        `SELECT count(*)::int AS n FROM outbox WHERE request_id = $1 AND topic = $2 AND status = 'sent'`,
        [id, TOPICS.requested],
      );
      return rows[0].n === 2;
    });
    // Both partners recognise the copy by its eventId and do not handle or ack it again.
    await waitFor(
      'both partners to skip the copy as a duplicate',
      async () =>
        orders.stats().duplicates > duplicatesBefore[0]! &&
        profiles.stats().duplicates > duplicatesBefore[1]!,
    );
    // Room for a (wrong) second ack to reach the ack consumer, were one sent.
    await sleep(1500);
    const again = await call('GET', `/v1/erasure-requests/${id}`);
    assert.equal(again.body.status, 'completed');
    assert.equal(again.body.completedAt, first.completedAt);
    assert.deepEqual(again.body.tasks, first.tasks);
    assert.equal((await completedOutboxRows(id)).length, 1, 'one completion');
  });

  it('a relay that dies between publish and mark-sent: another republishes after the lease, the request completes once', async () => {
    const duplicatesBefore = [orders.stats().duplicates, profiles.stats().duplicates];
    const relayIndex = running.findIndex((r) => r.url === 'relay');
    await running[relayIndex]!.stop();
    const { subject, bystander } = await seedPair();
    const id = await submit(subject);
    // Relay A's last act: claim and publish, then die before marking the row sent.
    const claimed = await claimOutboxBatch(db.pool, { owner: 'e2e-relay-a', batchSize: 10, leaseMs: 2000 });
    assert.deepEqual(
      claimed.map((r) => r.topic),
      [TOPICS.requested],
    );
    // A one-off send: its producer is not replaced afterwards.
    const once = { run: <T>(use: (p: typeof producer) => Promise<T>) => use(producer) };
    const published = await publishBatch(
      { producer: once, codec, partitions: createPartitionLookup(admin) },
      claimed,
    );
    assert.equal(published.published.length, 1);
    running[relayIndex] = await startRelay(loadRelayConfig({ ...env, RELAY_ID: 'e2e-relay-b' }));

    const done = await waitCompleted(id);
    assert.equal(done.tasks.length, 2);
    for (const t of done.tasks) assert.equal(t.state, 'acked');
    await waitFor('the republished row to be sent', async () => {
      const { rows } = await db.pool.query(
        `SELECT status, attempts FROM outbox WHERE request_id = $1 AND topic = $2`,
        [id, TOPICS.requested],
      );
      return rows[0].status === 'sent' ? rows[0] : undefined;
    }).then((row) => assert.equal(row.attempts, 2, 'published by A, then again by B'));
    await waitFor(
      'both partners to skip the republished event',
      async () =>
        orders.stats().duplicates > duplicatesBefore[0]! &&
        profiles.stats().duplicates > duplicatesBefore[1]!,
    );
    await sleep(1500);
    assert.equal((await completedOutboxRows(id)).length, 1, 'completed exactly once');
    assert.equal(await orders.count(identifiersOf(subject)), 0);
    assert.equal(await orders.count(identifiersOf(bystander)), 1);
  });
});
