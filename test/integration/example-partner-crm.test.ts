// The example CRM partner's synchronous delete API against the real PostgreSQL (its own
// database per run): what it deletes, its 404, Idempotency-Key replays, and refused
// credentials; then the real sync dispatcher calling it through a registered sync_http target.
import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { PassThrough } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import {
  loadCrmPartnerConfig,
  start as startCrm,
  type RunningCrmPartner,
} from '../../services/example-partner-crm/index.ts';
import { createLogger } from '../../services/shared/logger.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';
import { infra, uniqueName } from '../helpers/infra.ts';
import { eventually, startDispatcher } from '../helpers/sync-partner.ts';

const SECRET = 'crm-test-secret-canary-5d2e9a';
const BEARER_SECRET = 'crm-bearer-secret-canary-77b1';
const SUBJECT = { userId: `crm-subject-${randomUUID()}`, email: `Crm.Subject.${randomUUID()}@Example.org` };
const BYSTANDER = {
  userId: `crm-bystander-${randomUUID()}`,
  email: `crm.bystander.${randomUUID()}@example.org`,
};
const ids = (p: { userId: string; email: string }) => [
  { type: 'user_id', value: p.userId },
  { type: 'email', value: p.email },
];

interface CallOpts {
  key?: string | null;
  /** 'hmac' signs with `secret`; 'bearer' sends it; 'none' sends no credentials. */
  auth?: 'hmac' | 'bearer' | 'none';
  secret?: string;
  /** Unix seconds written in the HMAC timestamp. */
  timestamp?: number;
}

async function erase(url: string, body: unknown, opts: CallOpts = {}) {
  const raw = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (opts.key !== null) headers['idempotency-key'] = opts.key ?? randomUUID();
  const secret = opts.secret ?? SECRET;
  const auth = opts.auth ?? 'hmac';
  if (auth === 'bearer') headers['authorization'] = `Bearer ${secret}`;
  if (auth === 'hmac') {
    const ts = String(opts.timestamp ?? Math.floor(Date.now() / 1000));
    const mac = createHmac('sha256', secret).update(`${ts}.`).update(raw).digest('hex');
    headers['x-erasure-timestamp'] = ts;
    headers['x-erasure-signature'] = `v1=${mac}`;
  }
  const res = await fetch(`${url}/erase`, { method: 'POST', headers, body: raw });
  const text = await res.text();
  return { status: res.status, text, body: text ? JSON.parse(text) : undefined };
}

const subjectBody = (p: { userId: string; email: string }) => ({ email: p.email, userId: p.userId });

describe('example partner crm: synchronous delete API', () => {
  const database = uniqueName('crm');
  const logs: string[] = [];
  let crm: RunningCrmPartner;
  let bearer: RunningCrmPartner;

  const env = (extra: Record<string, string> = {}) => ({
    ...process.env,
    CRM_PARTNER_DATABASE: database,
    CRM_PARTNER_PORT: '0',
    CRM_PARTNER_SECRET_REF: 'CRM_TEST',
    ERASURE_SECRET_CRM_TEST: SECRET,
    ERASURE_SECRET_CRM_BEARER: BEARER_SECRET,
    ...extra,
  });
  const logger = () => {
    const stream = new PassThrough();
    stream.on('data', (d: Buffer) => logs.push(d.toString('utf8')));
    return createLogger({ service: 'example-partner-crm', level: 'debug', stream });
  };

  before(async () => {
    crm = await startCrm(loadCrmPartnerConfig(env()), logger());
    // A second replica on the same database, registered with bearer auth.
    bearer = await startCrm(
      loadCrmPartnerConfig(env({ CRM_PARTNER_AUTH: 'bearer', CRM_PARTNER_SECRET_REF: 'CRM_BEARER' })),
      logger(),
    );
  });
  after(async () => {
    await bearer?.stop();
    await crm?.stop();
    const admin = new pg.Client({ connectionString: infra.databaseUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
    const text = logs.join('');
    for (const canary of [SUBJECT.userId, SUBJECT.email, SUBJECT.email.toLowerCase(), SECRET, BEARER_SECRET])
      assert.ok(!text.includes(canary), 'partner logs hold no identifier values or secrets');
  });

  it('refuses a config without the shared secret, naming the variable only', () => {
    assert.throws(
      () => loadCrmPartnerConfig({ ...process.env, CRM_PARTNER_SECRET_REF: 'CRM_UNSET_X' }),
      /ERASURE_SECRET_CRM_UNSET_X must be set/,
    );
  });

  it('deletes every row matching any identifier of the subject and keeps the bystander', async () => {
    const s = { userId: `crm-a-${randomUUID()}`, email: `crm.a.${randomUUID()}@example.org` };
    await crm.seed([
      { userId: s.userId, email: s.email, name: 'by both' },
      { userId: s.userId, email: 'old.address@example.org', name: 'by user id only' },
      { userId: 'legacy-id', email: s.email.toUpperCase(), name: 'by email only, other case' },
      { userId: BYSTANDER.userId, email: BYSTANDER.email, name: 'bystander' },
    ]);
    const res = await erase(crm.url, subjectBody(s));
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { rowsDeleted: 3, remaining: 0 });
    assert.equal(await crm.count(ids(s)), 0);
    assert.equal(await crm.count(ids(BYSTANDER)), 1);
    // Either identifier alone is enough.
    await crm.seed([{ userId: 'x', email: SUBJECT.email, name: 'email only' }]);
    assert.equal((await erase(crm.url, { email: SUBJECT.email })).body.rowsDeleted, 1);
  });

  it('answers 404 with zero counts when nothing matches', async () => {
    const res = await erase(crm.url, { email: `nobody.${randomUUID()}@example.org`, userId: 'nobody' });
    assert.equal(res.status, 404);
    assert.deepEqual(res.body, { rowsDeleted: 0, remaining: 0 });
    assert.equal(await crm.count(ids(BYSTANDER)), 1);
  });

  it('answers a repeated Idempotency-Key with the first answer and no second effect', async () => {
    const key = randomUUID();
    await crm.seed([
      { userId: SUBJECT.userId, email: SUBJECT.email, name: 'one' },
      { userId: SUBJECT.userId, email: SUBJECT.email, name: 'two' },
    ]);
    const first = await erase(crm.url, subjectBody(SUBJECT), { key });
    assert.equal(first.status, 200);
    assert.deepEqual(first.body, { rowsDeleted: 2, remaining: 0 });
    // Data written after the first call: a replay of that call must not touch it.
    await crm.seed([{ userId: SUBJECT.userId, email: SUBJECT.email, name: 'later' }]);
    // The repeat goes to the other replica (its own auth), as after a lease ran out: the key is
    // shared through the database, so the answer is the same byte for byte.
    const again = await erase(bearer.url, subjectBody(SUBJECT), {
      key,
      auth: 'bearer',
      secret: BEARER_SECRET,
    });
    assert.equal(again.status, 200);
    assert.equal(again.text, first.text);
    assert.equal(await crm.count(ids(SUBJECT)), 1, 'the repeat deleted nothing');

    // Concurrent repeats of a new key: one effect.
    const key2 = randomUUID();
    const answers = await Promise.all(
      Array.from({ length: 5 }, () => erase(crm.url, subjectBody(SUBJECT), { key: key2 })),
    );
    for (const a of answers) assert.deepEqual([a.status, a.body], [200, { rowsDeleted: 1, remaining: 0 }]);

    // The same key with another body is a different call: refused, nothing deleted.
    await crm.seed([{ userId: BYSTANDER.userId, email: 'b2@example.org', name: 'bystander 2' }]);
    const reused = await erase(crm.url, { userId: BYSTANDER.userId }, { key });
    assert.equal(reused.status, 422);
    assert.equal(await crm.count(ids(BYSTANDER)), 2);
    assert.ok(logs.join('').includes('WARN_CRM_KEY_REUSED'));
  });

  it('refuses missing or wrong credentials with 401 and deletes nothing', async () => {
    const s = { userId: `crm-auth-${randomUUID()}`, email: `crm.auth.${randomUUID()}@example.org` };
    await crm.seed([{ userId: s.userId, email: s.email, name: 'protected' }]);
    const key = randomUUID();
    const now = Math.floor(Date.now() / 1000);
    const refused = [
      await erase(crm.url, subjectBody(s), { key, auth: 'none' }),
      await erase(crm.url, subjectBody(s), { key, secret: 'wrong-secret-wrong-secret' }),
      await erase(crm.url, subjectBody(s), { key, timestamp: now - 3600 }),
      // The HMAC partner does not take the secret as a bearer token, nor the other way round.
      await erase(crm.url, subjectBody(s), { key, auth: 'bearer' }),
      await erase(bearer.url, subjectBody(s), { key, auth: 'bearer', secret: 'wrong-secret-wrong-secret' }),
      await erase(bearer.url, subjectBody(s), { key, auth: 'none' }),
    ];
    for (const r of refused) assert.equal(r.status, 401, r.text);
    assert.equal(await crm.count(ids(s)), 1, 'nothing deleted');
    assert.ok(logs.join('').includes('WARN_CRM_AUTH_REJECTED'));

    // A signature over another body does not authorise this one.
    const ts = String(now);
    const mac = createHmac('sha256', SECRET).update(`${ts}.{"userId":"someone-else"}`).digest('hex');
    const forged = await fetch(`${crm.url}/erase`, {
      method: 'POST',
      headers: { 'idempotency-key': key, 'x-erasure-timestamp': ts, 'x-erasure-signature': `v1=${mac}` },
      body: JSON.stringify(subjectBody(s)),
    });
    assert.equal(forged.status, 401);
    assert.equal(await crm.count(ids(s)), 1);

    // Refused calls used no key: the same key with good credentials erases.
    const ok = await erase(crm.url, subjectBody(s), { key });
    assert.deepEqual([ok.status, ok.body], [200, { rowsDeleted: 1, remaining: 0 }]);
  });

  it('refuses calls it cannot act on without deleting anything', async () => {
    assert.equal((await erase(crm.url, subjectBody(BYSTANDER), { key: null })).status, 400);
    assert.equal((await erase(crm.url, 'not json')).status, 400);
    assert.equal((await erase(crm.url, { reason: 'gdpr' })).status, 400);
    assert.equal((await erase(crm.url, { email: 42 })).status, 400);
    assert.equal((await erase(crm.url, { email: 'x'.repeat(20_000) })).status, 413);
    // Not 404, which the dispatcher would read as "nothing to erase".
    assert.equal((await fetch(`${crm.url}/users/erase`, { method: 'POST' })).status, 400);
    assert.equal((await fetch(`${crm.url}/erase`)).status, 405);
    assert.equal(await crm.count(ids(BYSTANDER)), 2);
  });
});

describe('example partner crm: called by the real sync dispatcher', () => {
  const database = uniqueName('crm');
  let api: TestApi;
  let crm: RunningCrmPartner;
  let dispatcher: Awaited<ReturnType<typeof startDispatcher>>;
  let intake: string;

  before(async () => {
    api = await startTestApi();
    intake = await api.token(['submit', 'read']);
    crm = await startCrm(
      loadCrmPartnerConfig({
        ...process.env,
        CRM_PARTNER_DATABASE: database,
        CRM_PARTNER_SECRET_REF: 'CRM_E2E',
        ERASURE_SECRET_CRM_E2E: SECRET,
      }),
      createLogger({ service: 'example-partner-crm', level: 'error', stream: new PassThrough() }),
    );
    dispatcher = await startDispatcher(api, { ERASURE_SECRET_CRM_E2E: SECRET });
  });
  after(async () => {
    await dispatcher?.stop();
    await crm?.stop();
    await api?.stop();
    const admin = new pg.Client({ connectionString: infra.databaseUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.end();
  });

  const submit = async (p: { userId: string; email: string }) => {
    const res = await api.call('POST', '/v1/erasure-requests', {
      token: intake,
      headers: { 'idempotency-key': randomUUID() },
      body: { identifiers: ids(p), reason: 'gdpr_art17' },
    });
    assert.equal(res.status, 202, JSON.stringify(res.body));
    return res.body.id as string;
  };
  const settled = (id: string) =>
    eventually('request settled', async () => {
      const res = await api.call('GET', `/v1/erasure-requests/${id}`, { token: intake });
      return ['completed', 'needs_attention'].includes(res.body.status) ? res.body : undefined;
    });

  it('completes a request with a crm target, the partner answer kept as evidence', async () => {
    const reg = await api.call('POST', '/v1/targets', {
      body: {
        name: 'crm',
        kind: 'sync_http',
        identifierTypes: ['email', 'user_id'],
        http: {
          method: 'POST',
          urlTemplate: `${crm.url}/erase`,
          bodyTemplate: '{"email":"{{email}}","userId":"{{user_id}}"}',
          auth: { type: 'hmac_sha256', secretRef: 'CRM_E2E' },
          timeoutMs: 5000,
          rateLimitPerSecond: 5,
          concurrency: 2,
        },
      },
    });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const s = { userId: `crm-e2e-${randomUUID()}`, email: `crm.e2e.${randomUUID()}@example.org` };
    await crm.seed([
      { userId: s.userId, email: s.email, name: 'subject' },
      { userId: s.userId, email: s.email, name: 'subject again' },
      { userId: BYSTANDER.userId, email: BYSTANDER.email, name: 'bystander' },
    ]);

    const view = await settled(await submit(s));
    assert.equal(view.status, 'completed', JSON.stringify(view.tasks));
    const [task] = view.tasks;
    assert.equal(task.target, 'crm');
    assert.equal(task.state, 'acked');
    assert.equal(task.outcome, 'deleted');
    assert.equal(task.evidence.httpStatus, 200);
    assert.deepEqual(JSON.parse(task.evidence.detail), { rowsDeleted: 2, remaining: 0 });
    assert.equal(await crm.count(ids(s)), 0);
    assert.equal(await crm.count(ids(BYSTANDER)), 1);

    // A subject the CRM never held: 404, recorded as not_found, and still completed.
    const none = await settled(
      await submit({ userId: `crm-none-${randomUUID()}`, email: 'none@example.org' }),
    );
    assert.equal(none.status, 'completed');
    assert.equal(none.tasks[0].outcome, 'not_found');
    assert.deepEqual(JSON.parse(none.tasks[0].evidence.detail), { rowsDeleted: 0, remaining: 0 });
  });
});
