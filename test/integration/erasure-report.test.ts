// The erasure report against real PostgreSQL: what each target did, the deadline, and the
// journal entries with their chain checks; JSON and HTML; never identifier values; another
// owner's request is not found; a tampered entry shows as not intact.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { sealJournal } from '../../services/shared/journal.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';

const CANARY = 'report-canary-person';
const SCRIPT = '<script>alert(1)</script>';

describe('erasure report', () => {
  let api: TestApi;
  let intake: string;
  const ackTokens: Record<string, string> = {};

  before(async () => {
    api = await startTestApi();
    for (const name of ['crm-events', 'orders-events', 'ads-events']) {
      const body = { name, kind: 'async_event', identifierTypes: ['user_id'], ackSlaSeconds: 3600 };
      assert.equal((await api.call('POST', '/v1/targets', { body })).status, 201);
      ackTokens[name] = await api.token(['ack'], { target: name });
    }
    intake = await api.token(['submit', 'read'], { owner: 'privacy-team' });
  });
  after(async () => api?.stop());

  const submit = (value: string) => api.submitUser(intake, value);
  const ack = async (target: string, requestId: string, status: string, detail?: string) =>
    assert.equal(
      (
        await api.call('POST', '/v1/acks', {
          token: ackTokens[target],
          body: { requestId, target, status, detail },
        })
      ).status,
      200,
    );
  const report = (id: string, headers: Record<string, string> = {}, token = intake) =>
    api.call('GET', `/v1/erasure-requests/${id}/report`, { token, headers });

  it('reports each target, the deadline met and an intact, sealed journal', async () => {
    const id = await submit(CANARY);
    await ack('crm-events', id, 'deleted', `rows purged ${SCRIPT}`);
    await ack('orders-events', id, 'not_found');
    const open = await report(id);
    assert.equal(open.status, 200);
    assert.equal(open.body.request.status, 'in_progress');
    assert.equal(open.body.request.metDeadline, null, 'open: not judged yet');
    assert.deepEqual(open.body.summary, {
      targets: 3,
      deleted: 1,
      not_found: 1,
      failed: 0,
      cancelled: 0,
      open: 1,
    });

    await ack('ads-events', id, 'failed', 'table locked');
    while ((await sealJournal(api.db.pool)) > 0);
    const res = await report(id);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const r = res.body;
    assert.equal(r.reportVersion, 1);
    assert.equal(r.request.id, id);
    assert.equal(r.request.status, 'needs_attention');
    assert.equal(r.request.deadlineBasis, 'GDPR Art. 12(3): one month from receipt');
    assert.equal(r.request.metDeadline, true);
    assert.deepEqual(r.request.identifierTypes, ['user_id']);
    assert.deepEqual(
      r.targets.map((t: { target: string; result: string }) => [t.target, t.result]),
      [
        ['ads-events', 'failed'],
        ['crm-events', 'deleted'],
        ['orders-events', 'not_found'],
      ],
    );
    assert.equal(r.targets[0].lastError, 'table locked');
    assert.ok(r.journal.entries.length >= 4, 'accepted, three acks, completion');
    assert.equal(r.journal.intact, true);
    assert.equal(r.journal.unsealed, 0);
    for (const e of r.journal.entries) {
      assert.equal(e.intact, true, e.kind);
      assert.match(e.hash, /^[0-9a-f]{64}$/);
    }
    assert.equal(JSON.stringify(r).includes(CANARY), false, 'no identifier value in the report');
  });

  it('renders HTML for a browser, escaped and unable to run anything', async () => {
    const id = await submit(`${CANARY}-html`);
    await ack('crm-events', id, 'deleted', SCRIPT);
    const res = await report(id, { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
    assert.equal(res.headers.get('content-security-policy'), "default-src 'none'; style-src 'unsafe-inline'");
    assert.match(res.headers.get('vary') ?? '', /Accept/i);
    const html = String(res.body);
    assert.match(html, /^<!doctype html>/);
    assert.ok(html.includes(id));
    assert.equal(html.includes('<script'), false, 'partner text is escaped');
    assert.ok(html.includes('&lt;script&gt;'), 'and still shown');
    assert.equal(html.includes(CANARY), false, 'no identifier value in the page');
    const json = await report(id, { accept: '*/*' });
    assert.match(json.headers.get('content-type') ?? '', /^application\/json/);
  });

  it("answers 404 for another owner's request, 401 without a token, 403 without read", async () => {
    const id = await submit(`${CANARY}-owner`);
    const other = await api.token(['read'], { owner: 'someone-else' });
    const res = await report(id, {}, other);
    assert.equal(res.status, 404);
    assert.equal(res.body.code, 'ERR_NOT_FOUND');
    assert.equal((await report(randomUUID())).status, 404);
    assert.equal((await report('not-a-uuid')).status, 404);
    assert.equal((await report(id, {}, null as unknown as string)).status, 401);
    const submitOnly = await api.token(['submit'], { owner: 'privacy-team' });
    assert.equal((await report(id, {}, submitOnly)).status, 403);
  });

  it('shows a journal entry changed after sealing as not intact', async () => {
    const id = await submit(`${CANARY}-tamper`);
    while ((await sealJournal(api.db.pool)) > 0);
    assert.equal((await report(id)).body.journal.intact, true);
    await api.db.pool.query('ALTER TABLE journal DISABLE TRIGGER journal_append_only');
    try {
      await api.db.pool.query(
        `UPDATE journal SET detail = detail || '{"reason":"retention_expiry"}' WHERE request_id = $1`,
        [id],
      );
    } finally {
      await api.db.pool.query('ALTER TABLE journal ENABLE TRIGGER journal_append_only');
    }
    const r = (await report(id)).body;
    assert.equal(r.journal.intact, false);
    assert.equal(r.journal.entries[0].intact, false);
  });
});
