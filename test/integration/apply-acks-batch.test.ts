// applyAcks applies a whole batch of acks in one transaction (the ack consumer's hot path).
// Its results and effects must be exactly those of applying the same acks one at a time,
// in order: compared here against applyAck on a twin set of requests.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { applyAck, applyAcks, type AckInput } from '../../services/shared/apply-ack.ts';
import { TOPICS } from '../../services/shared/event-codec.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';

const TARGETS = ['one-events', 'two-events'] as const;

describe('applyAcks: a batch in one transaction', () => {
  let api: TestApi;
  let intake: string;

  before(async () => {
    api = await startTestApi();
    for (const name of TARGETS) {
      const body = { name, kind: 'async_event', identifierTypes: ['user_id'], ackSlaSeconds: 3600 };
      assert.equal((await api.call('POST', '/v1/targets', { body })).status, 201);
    }
    intake = await api.token(['submit', 'read']);
  });
  after(async () => api?.stop());

  async function newRequest(): Promise<string> {
    const res = await api.call('POST', '/v1/erasure-requests', {
      token: intake,
      headers: { 'idempotency-key': randomUUID() },
      body: { identifiers: [{ type: 'user_id', value: `u-${randomUUID()}` }], reason: 'gdpr_art17' },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.id;
  }

  /** What an ack may change, with the request's id replaced so twins compare equal. */
  async function effects(id: string) {
    const q = (sql: string) => api.db.pool.query(sql, [id]).then((r) => r.rows);
    return {
      request: await q(
        `SELECT status, completed_at IS NOT NULL AS completed FROM erasure_requests WHERE id = $1`,
      ),
      tasks: await q(
        `SELECT target, state, outcome, last_error, evidence->>'status' AS status, evidence->>'detail' AS detail
           FROM erasure_tasks WHERE request_id = $1 ORDER BY target`,
      ),
      completedEvents: (
        await q(`SELECT payload FROM outbox WHERE request_id = $1 AND topic = '${TOPICS.completed}'`)
      ).map((r) => ({ ...r.payload, requestId: 'x', completedAt: 'x', outcomes: r.payload.outcomes.length })),
      journal: (await q(`SELECT kind, detail FROM journal WHERE request_id = $1 ORDER BY id`)).map(
        (r) => r.kind,
      ),
    };
  }

  it('gives the same results and effects as applying the acks one by one, in order', async () => {
    // Four scenarios, each on a pair of twin requests: [batch twin, one-by-one twin].
    const twins = [];
    for (let i = 0; i < 4; i++) twins.push([await newRequest(), await newRequest()] as const);
    const unknown = randomUUID();
    const plan = (r: readonly string[]): AckInput[] => {
      const a = (id: string, target: string, status: AckInput['status'], detail: string | null = null) => ({
        requestId: id,
        target,
        status,
        detail,
        ackedAt: new Date(),
      });
      return [
        // 0: both tasks deleted → completed, with a duplicate and a contradicting ack after.
        a(r[0]!, 'one-events', 'deleted', 'rows gone'),
        a(r[0]!, 'two-events', 'not_found'),
        a(r[0]!, 'one-events', 'deleted', 'again'),
        a(r[0]!, 'two-events', 'failed', 'contradiction'),
        // 1: one failed, one deleted → needs_attention.
        a(r[1]!, 'one-events', 'failed', 'disk\u0000full'),
        a(r[1]!, 'two-events', 'deleted'),
        // 2: only one task acked → in_progress.
        a(r[2]!, 'two-events', 'deleted'),
        // 3: a target that is not the request's, and an unknown request.
        a(r[3]!, 'three-events', 'deleted'),
        a(unknown, 'one-events', 'deleted'),
      ];
    };
    const batchIds = twins.map((t) => t[0]);
    const singleIds = twins.map((t) => t[1]);
    const batch = await applyAcks(api.db.pool, plan(batchIds), 'test');
    const single = [];
    for (const ack of plan(singleIds)) single.push(await applyAck(api.db.pool, ack, 'test'));

    assert.deepEqual(
      batch.map((r) => r.result),
      [
        'applied',
        'applied',
        'duplicate',
        'duplicate',
        'applied',
        'applied',
        'applied',
        'refused',
        'unknown_request',
      ],
    );
    assert.deepEqual(
      batch.map((r) => r.result),
      single.map((r) => r.result),
    );
    // Statuses after the batch: each request's status once the whole batch is applied.
    assert.deepEqual(
      batch.map((r) => r.requestStatus),
      [
        'completed',
        'completed',
        'completed',
        'completed',
        'needs_attention',
        'needs_attention',
        'in_progress',
        'scheduled',
        undefined,
      ],
    );
    // Effects are the same, with one deliberate difference in the journal: a batch settles each
    // request once, at its end, so a request it completes skips the intermediate
    // request.in_progress entry the one-by-one path writes after its first ack.
    const comparable = async (id: string) => {
      const e = await effects(id);
      const final = e.request[0].status !== 'in_progress';
      return { ...e, journal: e.journal.filter((k) => !(final && k === 'request.in_progress')).sort() };
    };
    for (const [b, s] of twins) assert.deepEqual(await comparable(b), await comparable(s));
    const done = await effects(batchIds[0]!);
    assert.equal(done.completedEvents.length, 1, 'exactly one completed event');
    assert.deepEqual(done.journal.filter((k) => k === 'task.ack_ignored').length, 1);
  });

  it('completes each of many requests exactly once when batches race', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push(await newRequest());
    const acks = (target: string): AckInput[] =>
      ids.map((requestId) => ({ requestId, target, status: 'deleted', detail: null, ackedAt: new Date() }));
    // Two batches, one per target, racing each other and a replay of the first.
    await Promise.all([
      applyAcks(api.db.pool, acks('one-events'), 'a'),
      applyAcks(api.db.pool, acks('two-events').reverse(), 'b'),
      applyAcks(api.db.pool, acks('one-events'), 'c'),
    ]);
    const rows = await api.db.pool.query(
      `SELECT r.status, (SELECT count(*)::int FROM outbox o WHERE o.request_id = r.id AND o.topic = $2) AS events
         FROM erasure_requests r WHERE r.id = ANY ($1::uuid[])`,
      [ids, TOPICS.completed],
    );
    assert.equal(rows.rowCount, 20);
    for (const r of rows.rows) assert.deepEqual(r, { status: 'completed', events: 1 });
  });

  it('stores a detail with lone UTF-16 surrogates (an Avro string may hold them) as U+FFFD', async () => {
    // JSON.stringify keeps a lone surrogate as a \udXXX escape, which jsonb refuses (22P02):
    // the whole batch failed, again on every redelivery.
    const [failedId, deletedId] = [await newRequest(), await newRequest()];
    const ack = (requestId: string, status: AckInput['status'], detail: string): AckInput => ({
      requestId,
      target: 'one-events',
      status,
      detail,
      ackedAt: new Date(),
    });
    const results = await applyAcks(
      api.db.pool,
      [ack(deletedId, 'deleted', 'rows: 1 \udc00 😀 \ud800'), ack(failedId, 'failed', 'no \ud83d shard')],
      'test',
    );
    assert.deepEqual(
      results.map((r) => r.result),
      ['applied', 'applied'],
    );
    assert.equal((await effects(deletedId)).tasks[0].detail, 'rows: 1 \uFFFD 😀 \uFFFD');
    assert.equal((await effects(failedId)).tasks[0].last_error, 'no \uFFFD shard');
  });

  it('writes nothing when the database refuses the batch', async () => {
    const id = await newRequest();
    const before = await effects(id);
    const bad: AckInput = {
      requestId: id,
      target: 'one-events',
      status: 'deleted',
      detail: null,
      ackedAt: new Date(),
    };
    // A malformed uuid elsewhere in the batch makes Postgres reject the lock statement.
    await assert.rejects(applyAcks(api.db.pool, [bad, { ...bad, requestId: 'not-a-uuid' }], 'test'));
    assert.deepEqual(await effects(id), before);
  });
});
