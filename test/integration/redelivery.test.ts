// Targeted redelivery against the real PostgreSQL: mark-sent starts each target's ack clock,
// a target silent past its SLA is sent its event again (alone), an ack after that completes
// the request, a target silent through every delivery fails its task for a person to see,
// replicas never redeliver the same task twice, and a paused target is held.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createRedeliveryLoop, type RedeliveryOptions } from '../../services/redelivery/redelivery-loop.ts';
import { markSent } from '../../services/relay/mark-sent.ts';
import { applyAck } from '../../services/shared/apply-ack.ts';
import { TOPICS, toRequestedEvent } from '../../services/shared/event-codec.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const CANARY = 'late-partner-canary@example.org';
const RELAY = 'relay-test';

describe('targeted redelivery', () => {
  let api: TestApi;
  let intake: string;
  const logStream = new PassThrough();
  const logChunks: string[] = [];
  logStream.on('data', (d: Buffer) => logChunks.push(d.toString('utf8')));
  const logger = createLogger({ service: 'redelivery', level: 'debug', stream: logStream });

  /** No backoff on top of the SLA, so each step waits about one SLA. */
  const options = (extra: Partial<RedeliveryOptions> = {}): RedeliveryOptions => ({
    intervalMs: 50,
    batchSize: 100,
    maxAttempts: 5,
    backoff: { initialMs: 0, maxMs: 0, multiplier: 2 },
    loopBackoff: { initialMs: 100, maxMs: 1000, multiplier: 2 },
    ...extra,
  });
  const loopWith = (extra: Partial<RedeliveryOptions> = {}, pool = api.db.pool) =>
    createRedeliveryLoop({ pool, logger, options: options(extra), random: () => 0.5 });

  before(async () => {
    api = await startTestApi();
    intake = await api.token(['submit', 'read']);
  });
  after(async () => api?.stop());

  let targetSeq = 0;
  /**
   * Fresh async_event targets, so tests do not see each other's tasks. A 1 s ack SLA unless a
   * test must also see a task *before* its SLA runs out: that needs an SLA comfortably longer
   * than the queries in between take on a slow machine.
   */
  async function newTargets(n: number, identifierType: string, ackSlaSeconds = 1): Promise<string[]> {
    const names: string[] = [];
    for (let i = 0; i < n; i++) {
      const name = `late-${process.pid}-${++targetSeq}`;
      const body = { name, kind: 'async_event', identifierTypes: [identifierType], ackSlaSeconds };
      assert.equal((await api.call('POST', '/v1/targets', { body })).status, 201);
      names.push(name);
    }
    return names;
  }
  /** Parks a test's targets when it ends, so later tests' passes leave their tasks alone. */
  const park = async (targets: string[]) => {
    for (const name of targets) await api.call('PATCH', `/v1/targets/${name}`, { body: { paused: true } });
  };

  async function newRequest(identifierType: string, value = `v-${randomUUID()}`): Promise<string> {
    const res = await api.call('POST', '/v1/erasure-requests', {
      token: intake,
      headers: { 'idempotency-key': randomUUID() },
      body: { identifiers: [{ type: identifierType, value }], reason: 'gdpr_art17' },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.id;
  }
  async function newIdentifierType(): Promise<string> {
    const name = `idt_${randomUUID().replaceAll('-', '').slice(0, 12)}`;
    const res = await api.call('POST', '/v1/identifier-types', { body: { name, pattern: '^.+$' } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    return name;
  }

  /** What the relay does around a successful publish: lease the rows, then markSent. */
  async function publish(requestIds: string[]): Promise<number> {
    const { rows } = await api.db.pool.query<{ id: string }>(
      `UPDATE outbox SET lease_owner = $2, lease_until = now() + interval '1 minute', attempts = attempts + 1
        WHERE request_id = ANY ($1::uuid[]) AND status = 'pending' RETURNING id`,
      [requestIds, RELAY],
    );
    return markSent(
      api.db.pool,
      RELAY,
      rows.map((r) => r.id),
    );
  }

  const q = async (sql: string, params: unknown[]) => (await api.db.pool.query(sql, params)).rows;
  const task = async (id: string, target: string) =>
    (
      await q(
        `SELECT state, attempts, dispatched_at, next_attempt_at, last_error FROM erasure_tasks
          WHERE request_id = $1 AND target = $2`,
        [id, target],
      )
    )[0];
  const redeliveries = (id: string) =>
    q(
      `SELECT id, event_key, payload, status FROM outbox
        WHERE request_id = $1 AND topic = $2 AND payload ? 'redelivery' ORDER BY id`,
      [id, TOPICS.requested],
    );
  const journalKinds = async (id: string) =>
    (await q(`SELECT kind FROM journal WHERE request_id = $1 ORDER BY id`, [id])).map((j) => j.kind);
  /**
   * Seconds from a redelivery row's `created_at` or `sent_at` to its task's next look, both
   * as the database stored them: no wall clock, so no race with the queries in between.
   */
  const nextLookAfter = async (redeliveryId: string, from: 'created_at' | 'sent_at') =>
    Number(
      (
        await q(
          `SELECT extract(epoch FROM t.next_attempt_at - o.${from}) AS s
             FROM outbox o
             JOIN erasure_tasks t
               ON t.request_id = o.request_id AND t.target = o.payload->'redelivery'->>'target'
            WHERE o.id = $1`,
          [redeliveryId],
        )
      )[0].s,
    );

  /** Runs passes until the loop claims something (the SLA is a few seconds away at most). */
  async function passUntilClaimed(loop: ReturnType<typeof loopWith>, timeoutMs = 5000) {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const pass = await loop.runOnce();
      if (pass.claimed > 0) return pass;
      if (Date.now() > until) throw new Error('nothing came due');
      await sleep(100);
    }
  }

  it('mark-sent dispatches the pending tasks the event named, never an acked one, and starts the request', async () => {
    const type = await newIdentifierType();
    const [a, b] = await newTargets(2, type);
    const early = await newRequest(type, CANARY);
    const plain = await newRequest(type);
    // A partner can ack before mark-sent runs (it read the event first): that ack stands.
    const acked = await applyAck(
      api.db.pool,
      { requestId: early, target: a!, status: 'deleted', detail: null, ackedAt: new Date() },
      'test',
    );
    assert.equal(acked.result, 'applied');

    assert.equal(await publish([early, plain]), 2);
    assert.equal((await task(early, a!)).state, 'acked');
    for (const [id, target] of [
      [early, b!],
      [plain, a!],
      [plain, b!],
    ] as const) {
      const t = await task(id, target);
      assert.equal(t.state, 'dispatched', `${target} of ${id}`);
      assert.equal(t.attempts, 1, 'the first publication is delivery 1');
      assert.ok(t.dispatched_at);
    }
    const statuses = await q(`SELECT id, status FROM erasure_requests WHERE id = ANY ($1::uuid[])`, [
      [early, plain],
    ]);
    assert.deepEqual(
      statuses.map((s) => s.status),
      ['in_progress', 'in_progress'],
    );
    const dispatched = await q(
      `SELECT request_id, detail FROM journal WHERE kind = 'request.dispatched' AND request_id = ANY ($1::uuid[])`,
      [[early, plain]],
    );
    assert.equal(dispatched.length, 2);
    assert.deepEqual(dispatched.find((j) => j.request_id === early)!.detail.targets, [b]);
    assert.deepEqual(dispatched.find((j) => j.request_id === plain)!.detail, {
      targets: [a, b].sort(),
      requestStatus: 'in_progress',
    });
    assert.ok(!JSON.stringify(await q(`SELECT detail FROM journal`, [])).includes(CANARY));

    // Marking the same rows again (a replayed batch) dispatches nothing twice.
    await api.db.pool.query(`UPDATE outbox SET lease_owner = $2 WHERE request_id = ANY ($1::uuid[])`, [
      [early, plain],
      RELAY,
    ]);
    const ids = (await q(`SELECT id FROM outbox WHERE request_id = ANY ($1::uuid[])`, [[early, plain]])).map(
      (r) => r.id,
    );
    assert.equal(await markSent(api.db.pool, RELAY, ids), 2);
    assert.equal((await task(plain, a!)).attempts, 1);
    assert.equal(
      (await journalKinds(plain)).filter((k) => k === 'request.dispatched').length,
      1,
      'one dispatch entry',
    );
    await park([a!, b!]);
  });

  it('a late target gets its own redelivery (attempt 2, fresh eventId); an ack then completes the request', async () => {
    const type = await newIdentifierType();
    const sla = 3; // the "not late yet" checks below must run within it
    const [fast, slow] = await newTargets(2, type, sla);
    const id = await newRequest(type);
    await publish([id]);
    await applyAck(
      api.db.pool,
      { requestId: id, target: fast!, status: 'deleted', detail: null, ackedAt: new Date() },
      'test',
    );
    const loop = loopWith();
    assert.equal((await loop.runOnce()).claimed, 0, `not late yet: the SLA is ${sla} s`);

    const view0 = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    assert.deepEqual(view0.body.lateTargets, []);

    await sleep(sla * 1000 + 100);
    const view1 = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    assert.deepEqual(view1.body.lateTargets, [slow]);
    const slowView = view1.body.tasks.find((t: { target: string }) => t.target === slow);
    assert.deepEqual([slowView.late, slowView.deliveries], [true, 1]);
    assert.equal(view1.body.tasks.find((t: { target: string }) => t.target === fast).late, false);

    const pass = await passUntilClaimed(loop);
    assert.deepEqual(pass, { claimed: 1, redelivered: 1, failed: 0, deferred: 0 });
    const rows = await redeliveries(id);
    assert.equal(rows.length, 1, 'only the late target is redelivered');
    const [original] = await q(
      `SELECT event_key, payload FROM outbox WHERE request_id = $1 AND topic = $2 AND NOT payload ? 'redelivery'`,
      [id, TOPICS.requested],
    );
    const redelivery = rows[0];
    assert.equal(redelivery.event_key, original.event_key, 'same key: same partition, after the original');
    assert.deepEqual(redelivery.payload.redelivery, { attempt: 2, target: slow });
    assert.notEqual(redelivery.payload.eventId, original.payload.eventId);
    const without = (p: Record<string, unknown>, ...keys: string[]) =>
      Object.fromEntries(Object.entries(p).filter(([k]) => !keys.includes(k)));
    assert.deepEqual(
      without(redelivery.payload, 'eventId', 'redelivery'),
      without(original.payload, 'eventId'),
      'the same requested payload as the original',
    );
    assert.deepEqual(toRequestedEvent(redelivery.payload).redelivery, { attempt: 2, target: slow });

    const t = await task(id, slow!);
    assert.equal(t.state, 'retrying');
    assert.equal(t.attempts, 2);
    const wait = await nextLookAfter(redelivery.id, 'created_at');
    assert.ok(wait >= sla, `next look a whole SLA after the redelivery, not ${wait} s`);
    assert.equal((await loop.runOnce()).claimed, 0, 'not again before the next look');

    // Publishing a redelivery changes no task state; its next look counts from now.
    await publish([id]);
    const published = await task(id, slow!);
    assert.deepEqual({ ...published, next_attempt_at: null }, { ...t, next_attempt_at: null });
    assert.ok(published.next_attempt_at.getTime() >= t.next_attempt_at.getTime());
    const view2 = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    const slowView2 = view2.body.tasks.find((x: { target: string }) => x.target === slow);
    assert.deepEqual([slowView2.late, slowView2.deliveries], [true, 2]);

    const done = await applyAck(
      api.db.pool,
      {
        requestId: id,
        target: slow!,
        status: 'deleted',
        detail: null,
        ackedAt: new Date(),
        eventId: redelivery.payload.eventId,
      },
      'test',
    );
    assert.deepEqual(done, { result: 'applied', requestStatus: 'completed' });
    const view3 = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    assert.deepEqual(view3.body.lateTargets, []);
    const kinds = await journalKinds(id);
    assert.deepEqual(kinds, [
      'request.accepted',
      'request.dispatched',
      'task.acked',
      'task.redelivered',
      'task.acked',
      'request.completed',
    ]);
    const [entry] = await q(
      `SELECT detail FROM journal WHERE request_id = $1 AND kind = 'task.redelivered'`,
      [id],
    );
    assert.deepEqual(entry.detail, { target: slow, attempt: 2 });
    await sleep(sla * 1000 + 100); // past the next look the task had before its ack
    assert.equal((await loop.runOnce()).claimed, 0, 'an acked task is never redelivered');
    await park([fast!, slow!]);
  });

  it('after maxAttempts deliveries the task fails and the request needs attention, exactly once', async () => {
    const type = await newIdentifierType();
    const [silent] = await newTargets(1, type);
    const id = await newRequest(type);
    await publish([id]);
    const loop = loopWith({ maxAttempts: 2 });

    await passUntilClaimed(loop);
    assert.equal((await redeliveries(id)).length, 1);
    // The redelivery is not published yet (relay down): the task waits instead of burning
    // its last delivery on an event the partner never got.
    await sleep(1100);
    assert.equal((await loop.runOnce()).claimed, 0);
    assert.equal((await task(id, silent!)).state, 'retrying');

    await publish([id]);
    const pass = await passUntilClaimed(loop);
    assert.deepEqual(pass, { claimed: 1, redelivered: 0, failed: 1, deferred: 0 });
    const t = await task(id, silent!);
    assert.equal(t.state, 'failed');
    assert.equal(t.last_error, 'no acknowledgement after 2 deliveries');
    const [req] = await q(`SELECT status FROM erasure_requests WHERE id = $1`, [id]);
    assert.equal(req.status, 'needs_attention');

    await sleep(1100);
    assert.equal((await loop.runOnce()).claimed, 0, 'a failed task is left alone');
    const late = await applyAck(
      api.db.pool,
      { requestId: id, target: silent!, status: 'deleted', detail: null, ackedAt: new Date() },
      'test',
    );
    assert.equal(late.result, 'duplicate', 'the first terminal answer wins');
    const completed = await q(`SELECT payload FROM outbox WHERE request_id = $1 AND topic = $2`, [
      id,
      TOPICS.completed,
    ]);
    assert.equal(completed.length, 1, 'one completed event');
    assert.equal(completed[0].payload.status, 'needs_attention');
    assert.deepEqual(
      completed[0].payload.outcomes.map((o: { state: string; attempts: number }) => [o.state, o.attempts]),
      [['failed', 2]],
    );
    const kinds = await journalKinds(id);
    assert.equal(kinds.filter((k) => k === 'request.completed').length, 1);
    const [failed] = await q(`SELECT detail FROM journal WHERE request_id = $1 AND kind = 'task.failed'`, [
      id,
    ]);
    assert.deepEqual(failed.detail, {
      target: silent,
      status: 'failed',
      cause: 'no_acknowledgement',
      deliveries: 2,
    });
    const view = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
    assert.deepEqual(view.body.lateTargets, [], 'failed is terminal: shown as failed, not late');
    assert.match(logChunks.join(''), /ERR_REDELIVERY_EXHAUSTED/);
    await park([silent!]);
  });

  it('a redelivery published late gets its whole wait from its publication, not from when it was written', async () => {
    const type = await newIdentifierType();
    const sla = 3; // the loop's pass after the publication must run within it
    const [silent] = await newTargets(1, type, sla);
    const id = await newRequest(type);
    await publish([id]);
    const loop = loopWith();
    await passUntilClaimed(loop, 10_000);
    // The relay is down past the redelivery's next look (one SLA).
    await sleep(sla * 1000 + 300);
    await publish([id]);
    const t = await task(id, silent!);
    assert.equal(t.attempts, 2);
    const [redelivery] = await redeliveries(id);
    const wait = await nextLookAfter(redelivery.id, 'sent_at');
    assert.ok(wait >= sla, `next look a whole SLA after the publication, not ${wait} s`);
    assert.equal((await loop.runOnce()).claimed, 0, 'the partner has its SLA to answer the redelivery');
    assert.equal((await redeliveries(id)).length, 1);
    await park([silent!]);
  });

  it('two redelivery loops at once never redeliver the same task twice', async () => {
    const type = await newIdentifierType();
    const [target] = await newTargets(1, type);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push(await newRequest(type));
    await publish(ids);
    await sleep(1100);

    // Separate pools: two replicas, each with its own connections, small batches so they
    // contend for the same rows over many passes.
    const pools = [0, 1].map(() => new pg.Pool({ connectionString: api.db.url, max: 2 }));
    try {
      const loops = pools.map((pool) => loopWith({ batchSize: 3 }, pool));
      const drain = async (loop: (typeof loops)[number]) => {
        let total = 0;
        for (;;) {
          const pass = await loop.runOnce();
          total += pass.redelivered;
          if (pass.claimed === 0) return total;
        }
      };
      const totals = await Promise.all(loops.map(drain));
      assert.equal(totals[0]! + totals[1]!, 40);
    } finally {
      await Promise.all(pools.map((p) => p.end()));
    }
    const rows = await q(
      `SELECT request_id, count(*)::int AS n, min((payload->'redelivery'->>'attempt')::int) AS attempt
         FROM outbox WHERE request_id = ANY ($1::uuid[]) AND payload ? 'redelivery' GROUP BY request_id`,
      [ids],
    );
    assert.equal(rows.length, 40);
    assert.ok(rows.every((r) => r.n === 1 && r.attempt === 2));
    const attempts = await q(
      `SELECT DISTINCT attempts FROM erasure_tasks WHERE request_id = ANY ($1::uuid[])`,
      [ids],
    );
    assert.deepEqual(attempts, [{ attempts: 2 }]);
    await park([target!]);
  });

  it('a paused target is held: no redelivery until it is resumed', async () => {
    const type = await newIdentifierType();
    const [target] = await newTargets(1, type);
    const id = await newRequest(type);
    await publish([id]);
    await park([target!]);
    await sleep(1100);
    const loop = loopWith();
    assert.equal((await loop.runOnce()).claimed, 0);
    assert.equal((await redeliveries(id)).length, 0);
    assert.equal((await task(id, target!)).state, 'dispatched');

    await api.call('PATCH', `/v1/targets/${target}`, { body: { paused: false } });
    const pass = await loop.runOnce();
    assert.equal(pass.redelivered, 1);
    assert.deepEqual((await redeliveries(id))[0].payload.redelivery, { attempt: 2, target });
    await park([target!]);
  });

  it('the background loop redelivers on its own and stops cleanly', async () => {
    const type = await newIdentifierType();
    const [target] = await newTargets(1, type);
    const id = await newRequest(type);
    await publish([id]);
    const loop = loopWith();
    loop.start();
    try {
      const until = Date.now() + 5000;
      while ((await redeliveries(id)).length === 0) {
        if (Date.now() > until) throw new Error('the loop never redelivered');
        await sleep(50);
      }
    } finally {
      await loop.stop();
    }
    assert.ok(!logChunks.join('').includes(CANARY), 'identifier values never reach the logs');
    await park([target!]);
  });
});
