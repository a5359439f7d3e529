// Acknowledgements against the real stack: POST /v1/acks and the Kafka ack consumer both
// apply acks through one implementation; duplicates, reordering and races change nothing
// beyond the first terminal answer, and a request completes exactly once.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import type { Producer } from 'kafkajs';
import { loadAckConsumerConfig, start as startAckConsumer } from '../../services/ack-consumer/index.ts';
import { applyAck, type AckStatus } from '../../services/shared/apply-ack.ts';
import { createEventCodec, TOPICS, type AckEvent } from '../../services/shared/event-codec.ts';
import { ensureTopics, loadTopicDefinitions, registerSchemas } from '../../services/shared/event-log.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import { infra, positionNewGroup, testKafka, topicEnd, uniqueName } from '../helpers/infra.ts';

const SCHEMAS = join(import.meta.dirname, '..', '..', 'schemas');
const TARGETS = ['alpha-events', 'beta-events', 'gamma-events'] as const;
const CANARY = 'canary-person@example.org';

describe('acknowledgements', () => {
  let api: TestApi;
  const tokens: Record<string, string> = {};
  let intake: string;

  before(async () => {
    api = await startTestApi();
    for (const name of TARGETS) {
      const identifierTypes = name === 'gamma-events' ? ['email'] : ['user_id'];
      const body = { name, kind: 'async_event', identifierTypes, ackSlaSeconds: 3600 };
      assert.equal((await api.call('POST', '/v1/targets', { body })).status, 201);
      tokens[name] = await api.token(['ack'], { target: name });
    }
    intake = await api.token(['submit', 'read']);
  });
  after(async () => api?.stop());

  /** A fresh request with tasks for alpha-events and beta-events only. */
  async function newRequest(): Promise<string> {
    const res = await api.call('POST', '/v1/erasure-requests', {
      token: intake,
      headers: { 'idempotency-key': randomUUID() },
      body: { identifiers: [{ type: 'user_id', value: `u-${randomUUID()}` }], reason: 'gdpr_art17' },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.id;
  }

  const ack = (target: string, requestId: string, status: AckStatus, detail?: string, as = target) =>
    api.call('POST', '/v1/acks', { token: tokens[as], body: { requestId, target, status, detail } });

  /** Everything an ack may change, as comparable JSON (journal aside). */
  async function snapshot(id: string) {
    const q = (sql: string) => api.db.pool.query(sql, [id]).then((r) => r.rows);
    return JSON.parse(
      JSON.stringify({
        request: await q(`SELECT status, completed_at FROM erasure_requests WHERE id = $1`),
        tasks: await q(
          `SELECT target, state, outcome, last_error, evidence, acked_at, updated_at
             FROM erasure_tasks WHERE request_id = $1 ORDER BY target`,
        ),
        outbox: await q(`SELECT id, topic, event_key, payload FROM outbox WHERE request_id = $1 ORDER BY id`),
      }),
    );
  }
  const completedEvents = async (id: string) =>
    (
      await api.db.pool.query(`SELECT event_key, payload FROM outbox WHERE request_id = $1 AND topic = $2`, [
        id,
        TOPICS.completed,
      ])
    ).rows;
  const journal = async (id: string) =>
    (await api.db.pool.query(`SELECT kind, detail FROM journal WHERE request_id = $1 ORDER BY id`, [id]))
      .rows;

  it('applies deleted and not_found acks and completes the request once, with outcomes', async () => {
    const id = await newRequest();
    const requested = await api.db.pool.query(`SELECT status FROM outbox WHERE request_id = $1`, [id]);
    assert.deepEqual(requested.rows, [{ status: 'pending' }], 'no relay runs: the event is not sent yet');

    const first = await ack('alpha-events', id, 'deleted', `removed rows for ${CANARY}`);
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, {
      requestId: id,
      target: 'alpha-events',
      result: 'applied',
      requestStatus: 'in_progress',
    });
    assert.equal((await completedEvents(id)).length, 0);
    const second = await ack('beta-events', id, 'not_found');
    assert.equal(second.body.requestStatus, 'completed');

    const s = await snapshot(id);
    assert.equal(s.request[0].status, 'completed');
    assert.ok(s.request[0].completed_at);
    assert.deepEqual(
      s.tasks.map((t: any) => [t.target, t.state, t.outcome, t.last_error]),
      [
        ['alpha-events', 'acked', 'deleted', null],
        ['beta-events', 'acked', 'not_found', null],
      ],
    );
    assert.equal(s.tasks[0].evidence.detail, `removed rows for ${CANARY}`);
    assert.equal(s.tasks[0].evidence.status, 'deleted');
    const events = await completedEvents(id);
    assert.equal(events.length, 1);
    const { rows: subj } = await api.db.pool.query(
      `SELECT encode(subject_hash, 'hex') AS key FROM erasure_requests WHERE id = $1`,
      [id],
    );
    assert.equal(events[0].event_key, subj[0].key);
    assert.equal(events[0].payload.status, 'completed');
    assert.deepEqual(
      events[0].payload.outcomes.map((o: any) => [
        o.target,
        o.state,
        o.outcome,
        o.attempts,
        Boolean(o.ackedAt),
      ]),
      [
        ['alpha-events', 'acked', 'deleted', 0, true],
        ['beta-events', 'acked', 'not_found', 0, true],
      ],
    );
    const kinds = (await journal(id)).map((j: any) => j.kind);
    assert.deepEqual(kinds, [
      'request.accepted',
      'task.acked',
      'request.in_progress',
      'task.acked',
      'request.completed',
    ]);
    const text = JSON.stringify(await journal(id)) + api.logs();
    assert.ok(!text.includes(CANARY), 'partner detail never reaches the journal or the logs');

    const read = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    assert.equal(read.body.status, 'completed');
    assert.ok(read.body.completedAt);
  });

  it('a failed ack leaves the request needing attention, with a cleaned, bounded cause', async () => {
    const id = await newRequest();
    await ack('alpha-events', id, 'deleted');
    const res = await ack('beta-events', id, 'failed', `disk\u0007 full\n${'x'.repeat(1500)}`);
    assert.equal(res.body.requestStatus, 'needs_attention');
    const s = await snapshot(id);
    assert.equal(s.request[0].status, 'needs_attention');
    assert.ok(s.request[0].completed_at, 'every task is terminal: completed_at is when');
    const read = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    assert.equal(read.body.completedAt, new Date(s.request[0].completed_at).toISOString());
    const beta = s.tasks.find((t: any) => t.target === 'beta-events');
    assert.equal(beta.state, 'failed');
    assert.equal(beta.outcome, null);
    assert.equal(beta.last_error.length, 1000);
    assert.ok(beta.last_error.startsWith('disk  full x'), 'control characters replaced');
    const events = await completedEvents(id);
    assert.equal(events.length, 1);
    assert.equal(events[0].payload.status, 'needs_attention');
    const failed = (await journal(id)).find((j: any) => j.kind === 'task.failed');
    assert.deepEqual(failed.detail, { target: 'beta-events', status: 'failed', detailLength: 1000 });
  });

  it('settles the requests linked to a request with it: own status, completedAt, event and journal entry', async () => {
    const subject = `u-${randomUUID()}`;
    const submit = async (reason: string) => {
      const res = await api.call('POST', '/v1/erasure-requests', {
        token: intake,
        headers: { 'idempotency-key': randomUUID() },
        body: { identifiers: [{ type: 'user_id', value: subject }], reason },
      });
      assert.equal(res.status, 202, JSON.stringify(res.body));
      return res.body.id as string;
    };
    const primary = await submit('gdpr_art17');
    const linked = await submit('ccpa');
    const withdrawn = await submit('account_deletion');
    const cancel = await api.call('POST', `/v1/erasure-requests/${withdrawn}/cancel`, { token: intake });
    assert.equal(cancel.status, 200);

    await ack('alpha-events', primary, 'deleted');
    assert.equal((await completedEvents(linked)).length, 0, 'not before the primary settles');
    assert.equal((await ack('beta-events', primary, 'not_found')).body.requestStatus, 'completed');

    const rows = async (id: string) =>
      (await api.db.pool.query(`SELECT status, completed_at FROM erasure_requests WHERE id = $1`, [id]))
        .rows[0];
    const [p, l, w] = [await rows(primary), await rows(linked), await rows(withdrawn)];
    assert.deepEqual(l, { status: 'completed', completed_at: p.completed_at }, 'its own row settled');
    assert.equal(w.status, 'cancelled', 'a withdrawn request stays withdrawn');
    assert.equal(w.completed_at, null);

    const [primaryEvent] = await completedEvents(primary);
    const linkedEvents = await completedEvents(linked);
    assert.equal(linkedEvents.length, 1, 'one completed event of its own');
    assert.equal(linkedEvents[0].event_key, primaryEvent.event_key, 'keyed by the same subject');
    assert.deepEqual(linkedEvents[0].payload, { ...primaryEvent.payload, requestId: linked });
    assert.equal(primaryEvent.payload.outcomes.length, 2, "the primary's outcomes");
    assert.ok(
      (await completedEvents(withdrawn)).every((e: any) => e.payload.status === 'cancelled'),
      'no completion for a withdrawn request',
    );
    const completion = (await journal(linked)).filter((j: any) => j.kind === 'request.completed');
    assert.deepEqual(
      completion.map((j: any) => j.detail),
      [{ status: 'completed', acked: 2, notAcked: 0, linkedTo: primary }],
    );
    assert.equal((await journal(withdrawn)).at(-1).kind, 'request.cancelled');

    const read = await api.call('GET', `/v1/erasure-requests/${linked}`, { token: intake });
    assert.equal(read.body.status, 'completed');
    assert.equal(read.body.completedAt, p.completed_at.toISOString());
    const listed = await api.call('GET', '/v1/erasure-requests?status=completed&limit=500', {
      token: intake,
    });
    assert.ok(listed.body.items.some((i: any) => i.id === linked && i.completedAt === read.body.completedAt));

    // A duplicate ack settles nothing again, for the primary or the requests linked to it.
    assert.equal((await ack('beta-events', primary, 'not_found')).body.result, 'duplicate');
    assert.equal((await completedEvents(linked)).length, 1);
  });

  it('duplicates and conflicting later acks change nothing', async () => {
    const id = await newRequest();
    await ack('alpha-events', id, 'deleted');
    await ack('beta-events', id, 'not_found');
    const before = await snapshot(id);
    for (const [target, status] of [
      ['alpha-events', 'deleted'],
      ['beta-events', 'not_found'],
      ['alpha-events', 'failed'],
      ['beta-events', 'deleted'],
    ] as const) {
      const res = await ack(target, id, status, 'late');
      assert.equal(res.status, 200);
      assert.equal(res.body.result, 'duplicate');
      assert.equal(res.body.requestStatus, 'completed');
    }
    assert.deepEqual(await snapshot(id), before);
    const ignored = (await journal(id)).filter((j: any) => j.kind === 'task.ack_ignored');
    assert.deepEqual(
      ignored.map((j: any) => j.detail),
      [
        { target: 'alpha-events', status: 'failed', recordedState: 'acked' },
        { target: 'beta-events', status: 'deleted', recordedState: 'acked' },
      ],
    );
  });

  it('acks in any order end the same: the first terminal answer per task wins', async () => {
    const acks: [string, AckStatus][] = [
      ['alpha-events', 'deleted'],
      ['beta-events', 'failed'],
      ['alpha-events', 'not_found'],
      ['beta-events', 'deleted'],
    ];
    const outcome = async (order: number[]) => {
      const id = await newRequest();
      for (const i of order) await ack(acks[i]![0], id, acks[i]![1]);
      const s = await snapshot(id);
      return {
        status: s.request[0].status,
        tasks: s.tasks.map((t: any) => [t.target, t.state, t.outcome]),
        events: s.outbox.filter((o: any) => o.topic === TOPICS.completed).length,
      };
    };
    // Same first answer per target (alpha deleted, beta failed), other interleavings.
    const expected = await outcome([0, 1, 2, 3]);
    assert.deepEqual(expected.tasks, [
      ['alpha-events', 'acked', 'deleted'],
      ['beta-events', 'failed', null],
    ]);
    for (const order of [
      [1, 0, 3, 2],
      [0, 2, 1, 3],
      [1, 3, 0, 2],
    ])
      assert.deepEqual(await outcome(order), expected, `order ${order}`);
  });

  it("refuses an ack for another partner's task (403) and changes nothing", async () => {
    const id = await newRequest();
    const before = await snapshot(id);
    const res = await ack('beta-events', id, 'deleted', undefined, 'alpha-events');
    assert.equal(res.status, 403);
    assert.equal(res.body.code, 'ERR_FORBIDDEN');
    assert.deepEqual(await snapshot(id), before);
  });

  it('answers 404 for a target not in the request, or an unknown request, and changes nothing', async () => {
    const id = await newRequest();
    const before = await snapshot(id);
    const notInRequest = await ack('gamma-events', id, 'deleted');
    assert.equal(notInRequest.status, 404);
    assert.equal(notInRequest.body.code, 'ERR_NOT_FOUND');
    assert.equal((await ack('alpha-events', randomUUID(), 'deleted')).status, 404);
    assert.deepEqual(await snapshot(id), before);
    // The shared function says which, for the consumer's logs and metrics.
    const direct = await applyAck(
      api.db.pool,
      { requestId: id, target: 'gamma-events', status: 'deleted', detail: null, ackedAt: new Date() },
      'test',
    );
    assert.deepEqual(direct, { result: 'refused', requestStatus: 'scheduled' });
  });

  it('validates the body: unknown fields, bad status, bad uuid, admin without ack scope', async () => {
    const id = await newRequest();
    const post = (body: unknown, token = tokens['alpha-events']) =>
      api.call('POST', '/v1/acks', { token, body });
    const base = { requestId: id, target: 'alpha-events', status: 'deleted' };
    assert.equal((await post({ ...base, extra: 1 })).body.code, 'ERR_UNKNOWN_FIELD');
    assert.equal((await post({ ...base, status: 'DELETED' })).body.field, 'status');
    assert.equal((await post({ ...base, requestId: 'nope' })).body.field, 'requestId');
    assert.equal((await post({ ...base, detail: 5 })).body.field, 'detail');
    assert.equal((await post(base, api.adminToken)).status, 403);
    assert.equal((await snapshot(id)).request[0].status, 'scheduled');
  });

  it('concurrent acks for the last two tasks complete the request exactly once', async () => {
    for (let round = 0; round < 25; round++) {
      const id = await newRequest();
      const statuses: AckStatus[] = round % 3 === 0 ? ['deleted', 'failed'] : ['deleted', 'not_found'];
      // Each ack twice and both paths at once: four racing transactions per round.
      const results = await Promise.all([
        ack('alpha-events', id, statuses[0]!),
        ack('beta-events', id, statuses[1]!),
        applyAck(
          api.db.pool,
          { requestId: id, target: 'alpha-events', status: statuses[0]!, detail: null, ackedAt: new Date() },
          'race',
        ),
        applyAck(
          api.db.pool,
          { requestId: id, target: 'beta-events', status: statuses[1]!, detail: null, ackedAt: new Date() },
          'race',
        ),
      ]);
      const applied = results
        .map((r) => ('body' in r ? r.body.result : r.result))
        .filter((r) => r === 'applied');
      assert.equal(applied.length, 2, `round ${round}: one applied ack per task`);
      const events = await completedEvents(id);
      assert.equal(events.length, 1, `round ${round}: exactly one completed event`);
      const want = statuses[1] === 'failed' ? 'needs_attention' : 'completed';
      assert.equal((await snapshot(id)).request[0].status, want);
      const completions = (await journal(id)).filter((j: any) => j.kind === 'request.completed');
      assert.equal(completions.length, 1);
    }
  });

  describe('through Kafka', () => {
    let producer: Producer;
    // Where this suite's acks begin on the shared topic; new consumer groups start there.
    let ackMark: { partition: number; offset: string }[] = [];
    before(async () => {
      ackMark = await topicEnd(TOPICS.acks);
    });
    const codec = createEventCodec(infra.schemaRegistryUrl);
    const logs: string[] = [];
    const consumerLogger = () => {
      const stream = new PassThrough();
      stream.on('data', (d: Buffer) => logs.push(d.toString('utf8')));
      return createLogger({ service: 'ack-consumer', level: 'debug', stream });
    };
    const startConsumer = async (group: string) => {
      await positionNewGroup(group, TOPICS.acks, ackMark);
      return startAckConsumer(
        loadAckConsumerConfig({ ...process.env, DATABASE_URL: api.db.url, ACK_CONSUMER_GROUP: group }),
        consumerLogger(),
      );
    };
    const event = (
      requestId: string,
      target: string,
      status: string,
      detail: string | null = null,
    ): AckEvent => ({
      requestId,
      target,
      status,
      detail,
      ackedAt: Date.now(),
      eventId: randomUUID(),
    });
    const send = async (events: AckEvent[], raw: Buffer[] = []) => {
      const values = [...raw, ...(await Promise.all(events.map((e) => codec.encode(TOPICS.acks, e))))];
      await producer.send({
        topic: TOPICS.acks,
        acks: -1,
        messages: values.map((value) => ({ key: 'k', value })),
      });
    };
    async function waitFor(what: string, check: () => Promise<boolean>, ms = 45_000) {
      const until = Date.now() + ms;
      while (!(await check())) {
        if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const counted = async (running: { metrics: any }, result: string) => {
      const m = await running.metrics.getSingleMetric('erasure_acks_consumed_total').get();
      return m.values.find((v: any) => v.labels.result === result)?.value ?? 0;
    };

    before(async () => {
      await registerSchemas(infra.schemaRegistryUrl, join(SCHEMAS, 'avro'));
      const admin = testKafka().admin();
      await admin.connect();
      await ensureTopics(admin, await loadTopicDefinitions(SCHEMAS));
      await admin.disconnect();
      producer = testKafka().producer({ idempotent: true });
      await producer.connect();
    });
    after(async () => producer?.disconnect());

    it('applies acks, skips invalid events, and re-consumed duplicates change nothing', async () => {
      const id = await newRequest();
      const other = await newRequest();
      const group = uniqueName('acks');
      const bad = { ...event(id, 'alpha-events', 'deleted'), requestId: 'not-a-uuid' };
      await send(
        [bad, event(id, 'alpha-events', 'deleted', 'evidence'), event(id, 'beta-events', 'not_found')],
        [Buffer.from('not avro at all')],
      );
      // An unknown status is not lost: it becomes a failed task a person sees.
      await send([event(other, 'alpha-events', 'erased'), event(other, 'gamma-events', 'deleted')]);

      let running = await startConsumer(group);
      try {
        await waitFor(
          'the request to complete',
          async () => (await snapshot(id)).request[0].status === 'completed',
        );
        await waitFor('the unknown status', async () =>
          (await snapshot(other)).tasks.some((t: any) => t.state === 'failed'),
        );
        await waitFor('the refused ack', async () => (await counted(running, 'refused')) >= 1);
        assert.ok((await counted(running, 'invalid')) >= 3, 'garbage, bad uuid, unknown status');
      } finally {
        await running.stop();
      }
      const s = await snapshot(id);
      assert.deepEqual(
        s.tasks.map((t: any) => [t.target, t.state, t.outcome]),
        [
          ['alpha-events', 'acked', 'deleted'],
          ['beta-events', 'acked', 'not_found'],
        ],
      );
      assert.equal(s.tasks[0].evidence.detail, 'evidence');
      assert.equal((await completedEvents(id)).length, 1);
      const alphaOther = (await snapshot(other)).tasks.find((t: any) => t.target === 'alpha-events');
      assert.equal(alphaOther.last_error, 'unknown ack status "erased"');
      const joined = logs.join('');
      assert.match(joined, /ERR_ACK_INVALID/);
      assert.match(joined, /ERR_ACK_REFUSED/);

      // Duplicates and a contradiction, consumed by the same group after a restart.
      const before = await snapshot(id);
      await send([
        event(id, 'alpha-events', 'deleted'),
        event(id, 'beta-events', 'not_found'),
        event(id, 'alpha-events', 'failed'),
      ]);
      running = await startConsumer(group);
      try {
        await waitFor('three duplicates', async () => (await counted(running, 'duplicate')) >= 3);
        assert.equal(await counted(running, 'applied'), 0, 'committed offsets: nothing applied twice');
      } finally {
        await running.stop();
      }
      assert.deepEqual(await snapshot(id), before);

      // A new group reads the whole topic again: every one of ours is a duplicate.
      running = await startConsumer(uniqueName('acks-replay'));
      try {
        await waitFor('the replay', async () => (await counted(running, 'duplicate')) >= 6);
      } finally {
        await running.stop();
      }
      assert.deepEqual(await snapshot(id), before);
    });

    it('retries while Postgres is unreachable and commits no offset for an ack not yet applied', async () => {
      const id = await newRequest();
      await send([event(id, 'alpha-events', 'deleted')]);
      const group = uniqueName('acks-outage');
      const down = new URL(api.db.url);
      down.port = '1'; // nothing listens: every applyAck fails with ECONNREFUSED
      const from = logs.length;
      await positionNewGroup(group, TOPICS.acks, ackMark);
      let running = await startAckConsumer(
        loadAckConsumerConfig({
          ...process.env,
          DATABASE_URL: down.toString(),
          ACK_CONSUMER_GROUP: group,
          ACK_CONSUMER_MAX_BACKOFF_MS: '100',
        }),
        consumerLogger(),
      );
      try {
        await waitFor('retries', async () => logs.slice(from).join('').includes('"attempt":3'));
        assert.match(logs.slice(from).join(''), /ERR_ACK_RETRY/);
      } finally {
        await running.stop(); // stops mid-retry
      }
      assert.equal((await snapshot(id)).tasks[0].state, 'pending');
      // Same group, database back: the ack was never committed, so it is read and applied now.
      running = await startConsumer(group);
      try {
        await waitFor('the ack', async () => (await snapshot(id)).tasks[0].state === 'acked');
      } finally {
        await running.stop();
      }
    });

    // The heartbeat between retries throws once the group is rebalancing. That is no answer
    // about the ack: it was taken for "the database refused it" (the ack counted 'error') or
    // "undecodable" ('invalid'), and its offset committed with nothing applied.
    for (const outage of ['Postgres', 'the schema registry'] as const)
      it(`a rebalance while ${outage} is unreachable commits no offset for the ack in hand`, async () => {
        const id = await newRequest();
        const group = uniqueName('acks-rebalance');
        await positionNewGroup(group, TOPICS.acks, await topicEnd(TOPICS.acks));
        await send([event(id, 'alpha-events', 'deleted')]);
        const unreachable = (url: string) => {
          const u = new URL(url);
          u.hostname = '127.0.0.1';
          u.port = '1'; // nothing listens: ECONNREFUSED, retried
          return u.toString();
        };
        const env = {
          ...process.env,
          ACK_CONSUMER_GROUP: group,
          ACK_CONSUMER_MAX_BACKOFF_MS: '100',
          DATABASE_URL: outage === 'Postgres' ? unreachable(api.db.url) : api.db.url,
          SCHEMA_REGISTRY_URL:
            outage === 'Postgres' ? infra.schemaRegistryUrl : unreachable(infra.schemaRegistryUrl),
        };
        const retries = () => logs.join('').split('ERR_ACK_RETRY').length;
        const first = await startAckConsumer(loadAckConsumerConfig(env), consumerLogger());
        let second: Awaited<ReturnType<typeof startAckConsumer>> | undefined;
        const admin = testKafka().admin();
        await admin.connect();
        try {
          const before = retries();
          await waitFor('retries', async () => retries() > before + 3);
          // A second member joins: the first one's next heartbeat finds the group rebalancing.
          second = await startAckConsumer(loadAckConsumerConfig(env), consumerLogger());
          await waitFor('the rebalance', async () => {
            const [g] = (await admin.describeGroups([group])).groups;
            return g?.state === 'Stable' && g.members.length === 2;
          });
          const after = retries();
          const given = async (result: string) =>
            (await counted(first, result)) + (await counted(second!, result));
          await waitFor(
            'the ack retried by its new owner (or given up)',
            async () => retries() > after + 3 || (await given('error')) + (await given('invalid')) > 0,
          );
          assert.equal(await given('error'), 0, 'no ack taken as refused by the database');
          assert.equal(await given('invalid'), 0, 'no ack taken as undecodable');
        } finally {
          await admin.disconnect();
          await second?.stop();
          await first.stop();
        }
        assert.equal((await snapshot(id)).tasks[0].state, 'pending');
        // Same group, everything back: the offset was never committed, so the ack is applied now.
        const running = await startConsumer(group);
        try {
          await waitFor('the ack', async () => (await snapshot(id)).tasks[0].state === 'acked', 20_000);
        } finally {
          await running.stop();
        }
      });
  });
});
