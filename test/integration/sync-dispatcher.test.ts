// The sync dispatcher against real HTTP partners on loopback and the real PostgreSQL, through
// the real API: templates, auth and Idempotency-Key on the wire, and every outcome rule
// (2xx, 404, other 4xx, 408/429/5xx with Retry-After, timeouts, redirects, attempts running
// out), priorities, pausing and notBefore. Resilience (breaker, ordering, crashes, replicas)
// is in sync-dispatcher-resilience.test.ts.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import type http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { idempotencyKeyFor } from '../../services/sync-dispatcher/render-call.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import {
  eventually,
  reply,
  sleep,
  startDispatcher,
  startPartner,
  syncScenario,
  type Partner,
} from '../helpers/sync-partner.ts';

const CANARY = 'sync-canary/ä@example.org';
const SECRET = 'bearer-secret-canary-7f3a';
const HMAC_SECRET = 'hmac-secret-canary-91c2';

describe('sync dispatcher: calls and outcome rules', () => {
  let api: TestApi;
  let intake: string;
  let dispatcher: Awaited<ReturnType<typeof startDispatcher>>;
  let s: ReturnType<typeof syncScenario>;
  const partners: Partner[] = [];
  const held: http.ServerResponse[] = [];
  const partner = async (...args: Parameters<typeof startPartner>) => {
    const p = await startPartner(...args);
    partners.push(p);
    return p;
  };
  const park = (name: string) => api.call('PATCH', `/v1/targets/${name}`, { body: { paused: true } });
  const settled = (id: string, status: string) =>
    eventually(`request ${status}`, async () => {
      const v = await s.view(id);
      return v.status === status ? v : undefined;
    });

  before(async () => {
    api = await startTestApi();
    intake = await api.token(['submit', 'read']);
    s = syncScenario(api, () => intake);
    dispatcher = await startDispatcher(api, {
      ERASURE_SECRET_SYNC_TEST: SECRET,
      ERASURE_SECRET_SYNC_HMAC: HMAC_SECRET,
    });
  });
  after(async () => {
    for (const r of held) r.destroy();
    await dispatcher?.stop();
    for (const p of partners) await p.close();
    await api?.stop();
  });

  it('renders the call from the templates, adds auth and a stable Idempotency-Key, records evidence and completes the request', async () => {
    const type = await s.identifierType();
    const shop = await partner(reply(200, '{"deleted":1,"ref":"del-881"}'));
    const crm = await partner(reply(204));
    const a = await s.target(
      type,
      shop.url,
      {},
      {
        method: 'POST',
        headers: { 'X-Team': 'shop' },
        bodyTemplate: `{"subject":"{{${type}}}","reason":"gdpr"}`,
        auth: { type: 'bearer', secretRef: 'SYNC_TEST' },
      },
    );
    const b = await s.target(type, crm.url, {}, { auth: { type: 'hmac_sha256', secretRef: 'SYNC_HMAC' } });
    const id = await s.submit(type, CANARY);
    const view = await settled(id, 'completed');

    assert.equal(shop.calls.length, 1);
    const call = shop.calls[0]!;
    assert.equal(call.method, 'POST');
    assert.equal(call.url, `/erase/${encodeURIComponent(CANARY)}`);
    assert.deepEqual(JSON.parse(call.body), { subject: CANARY, reason: 'gdpr' });
    assert.equal(call.headers['authorization'], `Bearer ${SECRET}`);
    assert.equal(call.headers['x-team'], 'shop');
    assert.equal(call.headers['content-type'], 'application/json');
    assert.equal(call.headers['idempotency-key'], idempotencyKeyFor(id, a));
    assert.equal(call.headers['x-erasure-request-id'], id);

    const signed = crm.calls[0]!;
    assert.equal(signed.method, 'DELETE');
    const ts = String(signed.headers['x-erasure-timestamp']);
    const mac = createHmac('sha256', HMAC_SECRET).update(`${ts}.${signed.body}`).digest('hex');
    assert.equal(signed.headers['x-erasure-signature'], `v1=${mac}`);
    assert.equal(signed.headers['authorization'], undefined);

    const tasks = Object.fromEntries(view.tasks.map((t: any) => [t.target, t]));
    assert.equal(tasks[a].state, 'acked');
    assert.equal(tasks[a].outcome, 'deleted');
    assert.equal(tasks[a].attempts, 1);
    assert.equal(tasks[a].lastError, null);
    assert.equal(tasks[a].evidence.httpStatus, 200);
    assert.equal(tasks[a].evidence.detail, '{"deleted":1,"ref":"del-881"}');
    assert.equal(tasks[b].outcome, 'deleted');
    assert.equal(tasks[b].evidence.httpStatus, 204);
    assert.ok(view.completedAt);

    const kinds = (await s.journal(id)).map((j) => j.kind);
    assert.equal(kinds.filter((k) => k === 'task.dispatched').length, 2);
    assert.equal(kinds.filter((k) => k === 'task.acked').length, 2);
    assert.equal(kinds.filter((k) => k === 'request.completed').length, 1);
    const completed = await api.db.pool.query(
      `SELECT payload FROM outbox WHERE request_id = $1 AND topic = 'privacy.erasure.completed.v1'`,
      [id],
    );
    assert.equal(completed.rowCount, 1, 'the completed event is written exactly once');
    assert.equal(completed.rows[0].payload.status, 'completed');

    // Identifier values and secrets stay out of logs and the journal.
    const journalText = JSON.stringify(await s.journal(id));
    for (const secret of [CANARY, encodeURIComponent(CANARY), SECRET, HMAC_SECRET]) {
      assert.ok(!dispatcher.logs().includes(secret), 'dispatcher logs are free of identifiers and secrets');
      assert.ok(!journalText.includes(secret), 'the journal is free of identifiers and secrets');
    }
    assert.equal(await dispatcher.metric('erasure_sync_calls_total', { target: a, class: '2xx' }), 1);
    assert.equal(
      await dispatcher.metric('erasure_sync_task_outcomes_total', { target: a, outcome: 'deleted' }),
      1,
    );
    assert.equal(await dispatcher.metric('erasure_sync_rate_limit_per_second', { target: a }), 1000);
    assert.equal(await dispatcher.metric('erasure_sync_breaker_state', { target: a }), 0);
    const text = await dispatcher.registry.metrics();
    assert.match(text, new RegExp(`erasure_sync_call_duration_seconds_count\\{target="${a}"\\} 1`));
  });

  it('retries a flaky target with backoff and the same Idempotency-Key until it succeeds', async () => {
    const type = await s.identifierType();
    const flaky = await partner((call, res) =>
      reply(call.n <= 2 ? 503 : 200, call.n <= 2 ? 'busy' : 'ok')(call, res),
    );
    const t = await s.target(type, flaky.url);
    const id = await s.submit(type);
    await settled(id, 'completed');
    assert.equal(flaky.calls.length, 3);
    assert.equal(new Set(flaky.calls.map((c) => c.headers['idempotency-key'])).size, 1);
    const task = await s.task(id, t);
    assert.equal(task.outcome, 'deleted');
    assert.equal(task.attempts, 3);
    const retries = (await s.journal(id)).filter((j) => j.kind === 'task.retrying');
    assert.deepEqual(
      retries.map((j) => [j.detail['cause'], j.detail['httpStatus'], j.detail['attempt']]),
      [
        ['http_5xx', 503, 1],
        ['http_5xx', 503, 2],
      ],
    );
  });

  it('waits for a slow target within its timeout without retrying', async () => {
    const type = await s.identifierType();
    const slow = await partner(async (call, res) => {
      await sleep(400);
      reply(200, 'done')(call, res);
    });
    const t = await s.target(type, slow.url, {}, { timeoutMs: 5000 });
    const id = await s.submit(type);
    await settled(id, 'completed');
    assert.equal(slow.calls.length, 1);
    assert.equal((await s.task(id, t)).attempts, 1);
  });

  it('404, and statuses the target registered as not found, are acked as not_found', async () => {
    const type = await s.identifierType();
    const gone = await partner(reply(404, 'no such user'));
    const gone410 = await partner(reply(410));
    const a = await s.target(type, gone.url);
    const b = await s.target(type, gone410.url, {}, { notFoundStatuses: [404, 410] });
    const id = await s.submit(type);
    const view = await settled(id, 'completed');
    for (const name of [a, b]) {
      const task = view.tasks.find((x: any) => x.target === name);
      assert.equal(task.state, 'acked');
      assert.equal(task.outcome, 'not_found');
    }
    assert.equal(view.tasks.find((x: any) => x.target === a).evidence.detail, 'no such user');
  });

  it('another 4xx fails the task with the response recorded, and the request needs attention', async () => {
    const type = await s.identifierType();
    const bad = await partner(reply(400, 'subject id malformed'));
    const t = await s.target(type, bad.url);
    const id = await s.submit(type);
    const view = await settled(id, 'needs_attention');
    const task = view.tasks.find((x: any) => x.target === t);
    assert.equal(task.state, 'failed');
    assert.equal(task.lastError, 'the target refused the call with 400: subject id malformed');
    assert.equal(task.evidence.httpStatus, 400);
    assert.equal(bad.calls.length, 1, 'never retried');
    const failed = (await s.journal(id)).find((j) => j.kind === 'task.failed');
    assert.deepEqual(failed?.detail, { target: t, attempt: 1, cause: 'http_4xx', httpStatus: 400 });
    assert.match(dispatcher.logs(), /WARN_SYNC_TASK_FAILED/);
  });

  it('honours Retry-After on a 429', async () => {
    const type = await s.identifierType();
    let answeredAt = 0;
    const limited = await partner((call, res) => {
      if (call.n === 1) {
        answeredAt = Date.now();
        return reply(429, 'slow down', { 'retry-after': '2' })(call, res);
      }
      reply(200)(call, res);
    });
    const t = await s.target(type, limited.url);
    const id = await s.submit(type);
    await settled(id, 'completed');
    assert.equal(limited.calls.length, 2);
    // Without Retry-After the backoff here is at most 200 ms (SYNC_RETRY_MAX_MS).
    assert.ok(limited.calls[1]!.at - answeredAt >= 1900, 'the second call waited for Retry-After');
    const retry = (await s.journal(id)).find((j) => j.kind === 'task.retrying');
    assert.equal(retry?.detail['cause'], 'http_429');
    assert.ok(Number(retry?.detail['retryInMs']) >= 2000);
    assert.equal((await s.task(id, t)).attempts, 2);
  });

  it('retries a call that hangs past the target timeout', async () => {
    const type = await s.identifierType();
    const hang = await partner((call, res) => {
      if (call.n === 1)
        held.push(res); // never answered
      else reply(200)(call, res);
    });
    const t = await s.target(type, hang.url, {}, { timeoutMs: 300 });
    const id = await s.submit(type);
    await settled(id, 'completed');
    assert.equal(hang.calls.length, 2);
    const retry = (await s.journal(id)).find((j) => j.kind === 'task.retrying');
    assert.equal(retry?.detail['cause'], 'timeout');
    const task = await s.task(id, t);
    assert.equal(task.attempts, 2);
    assert.equal(task.outcome, 'deleted');
  });

  it('never follows a redirect to another host; follows a same-origin 307 with the same call', async () => {
    const type = await s.identifierType();
    const elsewhere = await partner(reply(200));
    const port = new URL(elsewhere.url).port;
    const redirecting = await partner(reply(302, '', { location: `http://localhost:${port}/erase/x` }));
    const moving = await partner((call, res) => {
      if (call.url.startsWith('/moved/')) return reply(200, 'moved ok')(call, res);
      reply(307, '', { location: `/moved${call.url}` })(call, res);
    });
    const away = await s.target(type, redirecting.url);
    const same = await s.target(
      type,
      moving.url,
      {},
      { method: 'POST', bodyTemplate: `{"id":"{{${type}}}"}` },
    );
    const id = await s.submit(type);
    const view = await settled(id, 'needs_attention');
    const refused = view.tasks.find((x: any) => x.target === away);
    assert.equal(refused.state, 'failed');
    assert.match(refused.lastError, /redirected \(302\) to another host; redirects are never followed/);
    assert.equal(elsewhere.calls.length, 0, 'the other host was never called');
    const followed = view.tasks.find((x: any) => x.target === same);
    assert.equal(followed.outcome, 'deleted');
    assert.equal(moving.calls.length, 2);
    const [first, second] = moving.calls;
    assert.equal(second!.method, 'POST');
    assert.equal(second!.body, first!.body);
    assert.equal(second!.headers['idempotency-key'], first!.headers['idempotency-key']);
  });

  it('calls once per value when the request has several of the type, and needs all of them', async () => {
    const type = await s.identifierType();
    const p = await partner((call, res) => reply(call.url.endsWith('/b') ? 404 : 200)(call, res));
    const t = await s.target(type, p.url);
    const res = await api.call('POST', '/v1/erasure-requests', {
      token: intake,
      headers: { 'idempotency-key': `multi-${Date.now()}` },
      body: {
        identifiers: [
          { type, value: 'a' },
          { type, value: 'b' },
        ],
        reason: 'gdpr_art17',
      },
    });
    assert.equal(res.status, 202);
    const view = await settled(res.body.id, 'completed');
    assert.deepEqual(p.calls.map((c) => c.url).sort(), ['/erase/a', '/erase/b']);
    assert.equal(new Set(p.calls.map((c) => c.headers['idempotency-key'])).size, 2);
    const task = view.tasks.find((x: any) => x.target === t);
    assert.equal(task.outcome, 'deleted', 'deleted where any call deleted');
    assert.equal(task.evidence.calls, 2);
  });

  it('fails the task when its attempts run out, saying why', async () => {
    const type = await s.identifierType();
    const down = await partner(reply(503));
    const t = await s.target(type, down.url, {}, { maxAttempts: 2 });
    const id = await s.submit(type);
    const view = await settled(id, 'needs_attention');
    assert.equal(down.calls.length, 2);
    const task = view.tasks.find((x: any) => x.target === t);
    assert.equal(task.lastError, 'gave up after 2 attempts; last error: the target answered 503');
    const failed = (await s.journal(id)).find((j) => j.kind === 'task.failed');
    assert.equal(failed?.detail['cause'], 'max_attempts');
    assert.equal(failed?.detail['lastCause'], 'http_5xx');
  });

  it('does not call without its secret (retried, visibly), for a paused target, or before notBefore; legal goes before bulk', async () => {
    const type = await s.identifierType();
    const p = await partner(reply(200));
    const noSecret = await s.target(
      type,
      p.url,
      {},
      { auth: { type: 'bearer', secretRef: 'NOT_CONFIGURED' } },
    );
    const ordered = await s.target(type, p.url, { paused: true }, { concurrency: 1 });
    const bulk = await s.submit(type, undefined, { priority: 'bulk' });
    const normal = await s.submit(type, undefined, { priority: 'normal' });
    const legal = await s.submit(type, undefined, { priority: 'legal' });
    const later = await s.submit(type, undefined, {
      notBefore: new Date(Date.now() + 3_600_000).toISOString(),
    });

    const waiting = await eventually('the secretless task is retrying', async () => {
      const task = await s.task(bulk, noSecret);
      return task.state === 'retrying' && task.attempts >= 1 ? task : undefined;
    });
    assert.match(waiting.last_error, /ERASURE_SECRET_NOT_CONFIGURED/);
    await park(noSecret);
    assert.equal(p.calls.length, 0, 'no call without the secret, none to the paused target');
    assert.match(dispatcher.logs(), /WARN_SYNC_SECRET_MISSING/);

    await api.call('PATCH', `/v1/targets/${ordered}`, { body: { paused: false } });
    await eventually('three calls', async () => p.calls.length >= 3);
    await sleep(300);
    assert.deepEqual(
      p.calls.map((c) => c.headers['x-erasure-request-id']),
      [legal, normal, bulk],
      'one at a time: legal, then normal, then bulk; the notBefore request not at all',
    );
    assert.equal((await s.task(later, ordered)).state, 'pending');
    await park(ordered);
  });
});
