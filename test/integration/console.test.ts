// The web console against the real API: the page and its assets are served without a token,
// with the CSP and content types a browser needs; unknown console paths are the API's 404
// problem; and the API's real answers render through the console's own render.js, so the
// client and the contract cannot drift apart.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { CONSOLE_CSP } from '../../services/api/console/console-routes.ts';
import { startTestApi, type TestApi } from '../helpers/api.ts';

// render.js is the browser's own module, plain JS served as is; the project's tsconfig checks
// TypeScript only, so it is loaded by URL (loosely typed) rather than imported by name.
const render = await import(new URL('../../services/api/console/assets/render.js', import.meta.url).href);

const ASSETS = join(import.meta.dirname, '..', '..', 'services', 'api', 'console', 'assets');
const SCRIPT = '<script>alert(1)</script>';
const CANARY = 'console-canary-person';

describe('web console', () => {
  let api: TestApi;
  let intake: string;
  let reader: string;

  before(async () => {
    api = await startTestApi();
    const body = {
      name: 'console-events',
      kind: 'async_event',
      identifierTypes: ['user_id'],
      ackSlaSeconds: 3600,
    };
    assert.equal((await api.call('POST', '/v1/targets', { body })).status, 201);
    intake = await api.token(['submit'], { owner: 'console-team' });
    reader = await api.token(['read'], { owner: 'console-team' });
  });
  after(async () => api?.stop());

  const submit = (value: string) => api.submitUser(intake, value);

  it('serves the page without a token, under a CSP that allows nothing inline', async () => {
    const res = await api.call('GET', '/console', { token: null });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/html; charset=utf-8');
    assert.equal(
      res.headers.get('content-security-policy'),
      "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    assert.equal(res.headers.get('content-security-policy'), CONSOLE_CSP);
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(res.headers.get('cache-control'), 'no-cache');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const html = String(res.body);
    assert.match(html, /^<!doctype html>/);
    assert.ok(html.includes('<script type="module" src="/console/app.js"></script>'));
    assert.ok(html.includes('<link rel="stylesheet" href="/console/app.css" />'));
    assert.ok(html.includes('<input id="token" type="password"'), 'the token is typed into a password field');
    assert.equal(/<script(?![^>]*\ssrc=)/.test(html), false, 'no inline script');
    assert.equal(/<style|\sstyle=|\son[a-z]+=/i.test(html), false, 'no inline style or handler');
    // A token sent anyway changes nothing: the page holds no data.
    const withToken = await api.call('GET', '/console', { token: reader });
    assert.equal(withToken.body, res.body);
  });

  it('serves its scripts and stylesheet as files, with their content types', async () => {
    for (const [path, file, type] of [
      ['/console/app.js', 'app.js', 'text/javascript; charset=utf-8'],
      ['/console/render.js', 'render.js', 'text/javascript; charset=utf-8'],
      ['/console/app.css', 'app.css', 'text/css; charset=utf-8'],
    ] as const) {
      const res = await api.call('GET', path, { token: null });
      assert.equal(res.status, 200, path);
      assert.equal(res.headers.get('content-type'), type, path);
      assert.equal(res.headers.get('cache-control'), 'no-cache', path);
      assert.equal(res.body, readFileSync(join(ASSETS, file), 'utf8'), path);
    }
    const app = await api.call('GET', '/console/app.js', { token: null });
    assert.match(String(app.body), /from '\.\/render\.js'/, 'app.js imports render.js beside it');
  });

  it("answers the API's 404 problem for any other console path", async () => {
    for (const path of [
      '/console/nope',
      '/console/index.html',
      '/console/assets/app.js',
      '/console/app.js/x',
    ]) {
      const res = await api.call('GET', path, { token: null });
      assert.equal(res.status, 404, path);
      assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8', path);
      assert.equal(res.body.code, 'ERR_NOT_FOUND', path);
    }
    assert.equal((await api.call('POST', '/console', { token: null })).status, 404);
  });

  it("renders the API's real answers through render.js, escaped", async () => {
    const id = await submit(CANARY);
    const ackToken = await api.token(['ack'], { target: 'console-events' });
    const ack = await api.call('POST', '/v1/acks', {
      token: ackToken,
      body: { requestId: id, target: 'console-events', status: 'deleted', detail: `purged ${SCRIPT}` },
    });
    assert.equal(ack.status, 200, JSON.stringify(ack.body));

    // The list, as a read token sees it, with the filters the console offers.
    const page = await api.call(
      'GET',
      `/v1/erasure-requests${render.listQuery({ status: 'completed', overdue: 'false' })}`,
      {
        token: reader,
      },
    );
    assert.equal(page.status, 200, JSON.stringify(page.body));
    const list: string = render.renderRequestList(page.body, { status: 'completed' });
    assert.ok(list.includes(`<a href="#/requests/${id}"><code>${id}</code></a>`), 'the request is listed');
    assert.ok(list.includes('<td>completed</td><td>gdpr_art17</td>'));

    // The detail: the partner's evidence is shown, escaped.
    const detail = await api.call('GET', `/v1/erasure-requests/${encodeURIComponent(id)}`, { token: reader });
    assert.equal(detail.status, 200);
    const html: string = render.renderRequestDetail(detail.body);
    assert.ok(html.includes(`<h2>Request <code>${id}</code></h2>`));
    assert.ok(html.includes('<td>console-events</td><td>acked</td><td>0</td><td>—</td>'));
    assert.ok(html.includes('purged &lt;script&gt;alert(1)&lt;/script&gt;'), 'evidence, escaped');
    assert.equal(html.includes('<script'), false);
    assert.ok(html.includes('<td>request.accepted</td>'), 'journal entries');
    assert.ok(html.includes('<td>request.completed</td>'));

    const report = await api.call('GET', `/v1/erasure-requests/${id}/report`, { token: reader });
    assert.equal(report.status, 200);
    const summary: string = render.renderReportSummary(report.body);
    assert.ok(summary.includes('<dd>1: 1 deleted, 0 not held, 0 failed, 0 cancelled, 0 open</dd>'));
    assert.ok(summary.includes('<tr><td>console-events</td><td>deleted</td><td>0</td>'));

    for (const out of [list, html, summary]) assert.equal(out.includes(CANARY), false, 'no identifier value');
  });

  it('shows targets to an admin, refuses them to a read token, and cancels before dispatch', async () => {
    const targets = await api.call('GET', '/v1/targets');
    assert.equal(targets.status, 200);
    assert.ok(
      render
        .renderTargets(targets.body)
        .includes('<button type="button" data-action="pause" data-name="console-events">Pause</button>'),
    );
    const refused = await api.call('PATCH', '/v1/targets/console-events', {
      token: reader,
      body: { paused: true },
    });
    assert.equal(refused.status, 403);
    assert.equal(
      render.renderProblem(refused.status, refused.body),
      '<strong>Not allowed</strong> (HTTP 403, ERR_FORBIDDEN): this token lacks the &quot;admin&quot; scope',
    );
    const paused = await api.call('PATCH', '/v1/targets/console-events', { body: { paused: true } });
    assert.equal(paused.status, 200);
    const resumable = await api.call('GET', '/v1/targets');
    assert.ok(
      render
        .renderTargets(resumable.body)
        .includes('<button type="button" data-action="resume" data-name="console-events">Resume</button>'),
    );

    // Nothing dispatches here (no relay runs), so a new request is cancellable.
    const id = await submit(`${CANARY}-cancel`);
    const open = await api.call('GET', `/v1/erasure-requests/${id}`, { token: reader });
    assert.ok(render.renderRequestDetail(open.body).includes(`data-action="cancel" data-id="${id}"`));
    const cancelled = await api.call('POST', `/v1/erasure-requests/${id}/cancel`, { token: intake });
    assert.equal(cancelled.status, 200, JSON.stringify(cancelled.body));
    assert.equal(
      (await api.call('PATCH', '/v1/targets/console-events', { body: { paused: false } })).status,
      200,
    );
  });
});
