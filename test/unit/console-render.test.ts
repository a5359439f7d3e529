// The console's views (services/api/console/assets/render.js): every API value is escaped in
// every field, overdue and late rows are marked, empty lists say so, links encode ids, and
// the filters offer the contract's statuses and reasons.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

// render.js is the browser's own module, plain JS served as is; the project's tsconfig checks
// TypeScript only, so it is loaded by URL (loosely typed) rather than imported by name.
const render = await import(new URL('../../services/api/console/assets/render.js', import.meta.url).href);

const SCRIPT = '<script>alert(1)</script>';
const SCRIPT_ESCAPED = '&lt;script&gt;alert(1)&lt;/script&gt;';
const QUOTE = '"><img src=x onerror=alert(1)>';
const QUOTE_ESCAPED = '&quot;&gt;&lt;img src=x onerror=alert(1)&gt;';

/**
 * No markup from the data made it through: escaped data holds no `<`, so every tag is the
 * view's own, and none is a script or image or carries an event handler.
 */
function assertInert(html: string): void {
  for (const [tag, name, attributes] of html.matchAll(/<\/?([a-z0-9]+)([^>]*)>/gi)) {
    assert.ok(!['script', 'img'].includes(name!.toLowerCase()), `no ${name} element: ${tag}`);
    // Inside a quoted value (escaped data holds no `"`) an "onerror=" is text.
    assert.doesNotMatch(attributes!.replace(/"[^"]*"/g, '""'), /\son[a-z]+=/i, `no event handler: ${tag}`);
  }
}

const summary = (over: Record<string, unknown> = {}) => ({
  id: '0b6f9d4e-4c1e-4f7b-9a57-0d9b1f0f2a10',
  status: 'scheduled',
  reason: 'gdpr_art17',
  priority: 'legal',
  receivedAt: '2026-01-02T03:04:05.000Z',
  deadline: '2026-02-02T03:04:05.000Z',
  overdue: false,
  completedAt: null,
  linkedTo: null,
  links: { self: '/v1/erasure-requests/0b6f9d4e-4c1e-4f7b-9a57-0d9b1f0f2a10' },
  ...over,
});

const detail = (over: Record<string, unknown> = {}) => ({
  ...summary(),
  identifierTypes: ['email', 'user_id'],
  notBefore: null,
  cancelledAt: null,
  tasks: [],
  journal: [],
  lateTargets: [],
  ...over,
});

const task = (over: Record<string, unknown> = {}) => ({
  target: 'crm-events',
  kind: 'async_event',
  state: 'acked',
  outcome: 'deleted',
  attempts: 1,
  lastError: null,
  ackedAt: '2026-01-02T04:00:00.000Z',
  evidence: { status: 'deleted' },
  late: false,
  ...over,
});

const report = (over: Record<string, unknown> = {}) => ({
  reportVersion: 1,
  generatedAt: '2026-01-03T00:00:00.000Z',
  request: {
    id: summary().id,
    deadline: '2026-02-02T03:04:05.000Z',
    deadlineBasis: 'GDPR Art. 12(3): one month from receipt',
    metDeadline: null,
    overdue: false,
  },
  summary: { targets: 1, deleted: 1, not_found: 0, failed: 0, cancelled: 0, open: 0 },
  targets: [
    {
      target: 'crm-events',
      result: 'deleted',
      attempts: 1,
      ackedAt: '2026-01-02T04:00:00.000Z',
      late: false,
    },
  ],
  journal: {
    intact: true,
    unsealed: 0,
    entries: [{ intact: true }],
    verifyWholeChain: 'erasure journal verify',
  },
  ...over,
});

describe('console escapeHtml', () => {
  it('escapes markup and both quotes, shows non-strings as JSON and nothing as empty', () => {
    assert.equal(render.escapeHtml(SCRIPT), SCRIPT_ESCAPED);
    assert.equal(render.escapeHtml(QUOTE), QUOTE_ESCAPED);
    assert.equal(render.escapeHtml(`it's & "so"`), 'it&#39;s &amp; &quot;so&quot;');
    assert.equal(render.escapeHtml({ detail: SCRIPT }), `{&quot;detail&quot;:&quot;${SCRIPT_ESCAPED}&quot;}`);
    assert.equal(render.escapeHtml(3), '3');
    assert.equal(render.escapeHtml(null), '');
    assert.equal(render.escapeHtml(undefined), '');
  });
});

describe('console requests list', () => {
  it('escapes every field of every row and the filter values', () => {
    const hostile = summary({
      id: QUOTE,
      status: SCRIPT,
      reason: SCRIPT,
      receivedAt: QUOTE,
      deadline: SCRIPT,
      completedAt: QUOTE,
    });
    const html = render.renderRequestList({ items: [hostile], nextCursor: QUOTE }, { target: QUOTE });
    assertInert(html);
    assert.ok(html.includes(`<code>${QUOTE_ESCAPED}</code>`), 'the id');
    assert.ok(html.includes(`<td>${SCRIPT_ESCAPED}</td><td>${SCRIPT_ESCAPED}</td><td>${QUOTE_ESCAPED}</td>`));
    assert.ok(html.includes(`<td>${QUOTE_ESCAPED}</td></tr>`), 'completedAt');
    assert.ok(html.includes(`<input name="target" maxlength="200" value="${QUOTE_ESCAPED}">`));
    // Links carry the id and the cursor percent-encoded, then escaped.
    assert.ok(html.includes('href="#/requests/%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"'));
    assert.ok(
      html.includes(
        `<a class="button" href="#/requests?target=%22%3E%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E&amp;cursor=%22%3E%3Cimg+src%3Dx+onerror%3Dalert%281%29%3E">Next page</a>`,
      ),
    );
  });

  it('marks overdue requests and only those', () => {
    const late = summary({ id: 'aaaaaaaa-0000-4000-8000-000000000001', overdue: true });
    const fine = summary({ id: 'aaaaaaaa-0000-4000-8000-000000000002', overdue: false });
    const html: string = render.renderRequestList({ items: [late, fine], nextCursor: null }, {});
    const rows = html.split('\n').filter((l) => l.startsWith('<tr'));
    assert.equal(rows.length, 3, 'a header and two rows');
    assert.ok(rows[1]!.startsWith('<tr class="overdue">'));
    assert.ok(rows[1]!.includes('2026-02-02T03:04:05.000Z <strong class="flag">overdue</strong></td>'));
    assert.ok(rows[2]!.startsWith('<tr><td>'));
    assert.equal(rows[2]!.includes('overdue'), false);
    assert.equal(html.includes('Next page'), false, 'no next page on the last page');
  });

  it('says so when a page is empty, and offers the first page again past it', () => {
    assert.ok(
      render
        .renderRequestList({ items: [], nextCursor: null }, {})
        .includes('<p class="empty">No requests.</p>'),
    );
    const filtered = render.renderRequestList(
      { items: [], nextCursor: null },
      { status: 'completed', cursor: 'abc' },
    );
    assert.ok(filtered.includes('<p class="empty">No requests match these filters.</p>'));
    assert.ok(filtered.includes('<a class="button" href="#/requests?status=completed">First page</a>'));
    assert.equal(filtered.includes('<table>'), false);
  });

  it("selects the filters given and offers the contract's statuses and reasons", () => {
    const html: string = render.renderRequestList(
      { items: [], nextCursor: null },
      { status: 'needs_attention', reason: 'ccpa', overdue: 'true' },
    );
    assert.ok(html.includes('<option value="needs_attention" selected>needs_attention</option>'));
    assert.ok(html.includes('<option value="ccpa" selected>ccpa</option>'));
    assert.ok(html.includes('<option value="true" selected>overdue only</option>'));
    const doc = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', '..', 'schemas', 'openapi.json'), 'utf8'),
    );
    assert.deepEqual(render.REQUEST_STATUSES, doc.components.schemas.RequestStatus.enum);
    assert.deepEqual(render.REASONS, doc.components.schemas.Reason.enum);
  });
});

describe('console request detail', () => {
  it('escapes target names, states, errors, evidence and journal entries', () => {
    const html: string = render.renderRequestDetail(
      detail({
        id: QUOTE,
        identifierTypes: [SCRIPT],
        linkedTo: QUOTE,
        tasks: [
          task({
            target: SCRIPT,
            state: QUOTE,
            lastError: SCRIPT,
            ackedAt: QUOTE,
            evidence: { detail: SCRIPT },
          }),
          task({ target: QUOTE, attempts: SCRIPT, evidence: QUOTE }),
        ],
        journal: [{ seq: 7, kind: SCRIPT, at: QUOTE, detail: { target: QUOTE, note: SCRIPT } }],
      }),
    );
    assertInert(html);
    assert.ok(html.includes(`<h2>Request <code>${QUOTE_ESCAPED}</code></h2>`));
    assert.ok(html.includes(`<dt>Identifier types</dt><dd>${SCRIPT_ESCAPED}</dd>`));
    assert.ok(
      html.includes(
        `<tr><td>${SCRIPT_ESCAPED}</td><td>${QUOTE_ESCAPED}</td><td>1</td><td>${SCRIPT_ESCAPED}</td>` +
          `<td>${QUOTE_ESCAPED}</td><td><code>{&quot;detail&quot;:&quot;${SCRIPT_ESCAPED}&quot;}</code></td></tr>`,
      ),
    );
    assert.ok(html.includes(`<tr><td>${QUOTE_ESCAPED}</td><td>acked</td><td>${SCRIPT_ESCAPED}</td>`));
    assert.ok(html.includes(`<td><code>${QUOTE_ESCAPED}</code></td></tr>`), 'evidence as a string');
    assert.ok(
      html.includes(
        `<tr><td>7</td><td>${SCRIPT_ESCAPED}</td><td>${QUOTE_ESCAPED}</td>` +
          `<td>{&quot;target&quot;:&quot;\\&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&quot;,&quot;note&quot;:&quot;${SCRIPT_ESCAPED}&quot;}</td></tr>`,
      ),
    );
    assert.ok(html.includes(`data-id="${QUOTE_ESCAPED}"`), 'the cancel button names the request');
  });

  it('offers Cancel only before dispatch, and marks overdue requests and late tasks', () => {
    const open: string = render.renderRequestDetail(detail({ status: 'received' }));
    assert.ok(
      open.includes(
        '<button type="button" data-action="cancel" data-id="0b6f9d4e-4c1e-4f7b-9a57-0d9b1f0f2a10">',
      ),
    );
    const running: string = render.renderRequestDetail(
      detail({ status: 'in_progress', overdue: true, tasks: [task({ state: 'dispatched', late: true })] }),
    );
    assert.equal(running.includes('data-action="cancel"'), false);
    assert.ok(running.includes('Only a request not yet dispatched can be cancelled.'));
    assert.ok(running.includes('<dd>2026-02-02T03:04:05.000Z <strong class="flag">overdue</strong></dd>'));
    assert.ok(running.includes('<tr class="late"><td>crm-events <strong class="flag">late</strong></td>'));
    assert.equal(open.includes('overdue'), false);
  });

  it('says so when there are no tasks or journal entries, and dashes missing values', () => {
    const html: string = render.renderRequestDetail(detail());
    assert.ok(
      html.includes('<p class="empty">No tasks: no registered target holds these identifier types.</p>'),
    );
    assert.ok(html.includes('<p class="empty">No journal entries.</p>'));
    assert.ok(html.includes('<dt>Completed</dt><dd>—</dd>'));
    assert.ok(html.includes('<dt>Linked to</dt><dd>—</dd>'));
    assert.ok(html.includes('<section id="report"'), 'a place for the report');
  });
});

describe('console report summary', () => {
  it('escapes target names and results, and sums up the outcome', () => {
    const html: string = render.renderReportSummary(
      report({
        targets: [{ target: SCRIPT, result: QUOTE, attempts: 2, ackedAt: null, late: true }],
        summary: { targets: 3, deleted: 1, not_found: 1, failed: 1, cancelled: 0, open: 0 },
        request: { ...report().request, deadlineBasis: SCRIPT, metDeadline: false },
      }),
    );
    assertInert(html);
    assert.ok(
      html.includes(
        `<tr><td>${SCRIPT_ESCAPED}</td><td>${QUOTE_ESCAPED}</td><td>2</td><td>—</td><td>yes</td></tr>`,
      ),
    );
    assert.ok(html.includes('<dd>3: 1 deleted, 1 not held, 1 failed, 0 cancelled, 0 open</dd>'));
    assert.ok(html.includes(`(${SCRIPT_ESCAPED})</dd>`));
    assert.ok(html.includes('<dt>Deadline met</dt><dd><span class="flag">MISSED</span></dd>'));
    assert.ok(html.includes('<dt>Journal</dt><dd>all 1 entries sealed and intact</dd>'));
  });

  it('says whether the journal checks out and an empty report has no targets', () => {
    const html: string = render.renderReportSummary(
      report({
        targets: [],
        journal: {
          intact: false,
          unsealed: 2,
          entries: [{ intact: null }, { intact: false }],
          verifyWholeChain: 'x',
        },
      }),
    );
    assert.ok(html.includes('<dt>Journal</dt><dd>2 not sealed yet, 1 broken</dd>'));
    assert.ok(html.includes('<p class="empty">No targets.</p>'));
    assert.ok(html.includes('<span class="flag">open</span>'));
  });
});

describe('console targets', () => {
  it('escapes names and identifier types, and offers Pause or Resume by state', () => {
    const html: string = render.renderTargets({
      items: [
        { name: QUOTE, kind: SCRIPT, identifierTypes: [SCRIPT, 'email'], ackSlaSeconds: 3600, paused: false },
        { name: SCRIPT, kind: 'sync_http', identifierTypes: [], ackSlaSeconds: QUOTE, paused: true },
      ],
    });
    assertInert(html);
    assert.ok(
      html.includes(
        `<tr><td>${QUOTE_ESCAPED}</td><td>${SCRIPT_ESCAPED}</td><td>${SCRIPT_ESCAPED}, email</td><td>3600</td><td>no</td>` +
          `<td><button type="button" data-action="pause" data-name="${QUOTE_ESCAPED}">Pause</button></td></tr>`,
      ),
    );
    assert.ok(
      html.includes(
        `<tr class="paused"><td>${SCRIPT_ESCAPED}</td><td>sync_http</td><td>—</td><td>${QUOTE_ESCAPED}</td><td>yes</td>` +
          `<td><button type="button" data-action="resume" data-name="${SCRIPT_ESCAPED}">Resume</button></td></tr>`,
      ),
    );
  });

  it('says so when no target is registered', () => {
    assert.equal(
      render.renderTargets({ items: [] }),
      '<h2>Targets</h2>\n<p class="empty">No targets are registered.</p>',
    );
  });
});

describe('console problems', () => {
  it("shows a problem's title, status, code and detail, escaped", () => {
    assert.equal(
      render.renderProblem(403, {
        title: 'Forbidden',
        code: 'ERR_FORBIDDEN',
        detail: 'this token lacks the "admin" scope',
      }),
      '<strong>Forbidden</strong> (HTTP 403, ERR_FORBIDDEN): this token lacks the &quot;admin&quot; scope',
    );
    const html: string = render.renderProblem(409, { title: SCRIPT, code: QUOTE, detail: QUOTE });
    assertInert(html);
    assert.equal(html, `<strong>${SCRIPT_ESCAPED}</strong> (HTTP 409, ${QUOTE_ESCAPED}): ${QUOTE_ESCAPED}`);
    assert.equal(render.renderProblem(0, undefined), '<strong>Request failed</strong>');
  });
});

describe('console routes', () => {
  it('reads views and list filters from the location hash', () => {
    assert.deepEqual(render.parseRoute(''), { view: 'requests', filter: {} });
    assert.deepEqual(render.parseRoute('#/requests?status=completed&overdue=true&limit=5&target='), {
      view: 'requests',
      filter: { status: 'completed', overdue: 'true' },
    });
    assert.deepEqual(render.parseRoute('#/requests/a%2Fb'), { view: 'request', id: 'a/b' });
    assert.deepEqual(render.parseRoute('#/requests/%E0%A4%A'), {
      view: 'unknown',
      path: '/requests/%E0%A4%A',
    });
    assert.deepEqual(render.parseRoute('#/targets'), { view: 'targets' });
    assert.deepEqual(render.parseRoute('#/tokens'), { view: 'unknown', path: '/tokens' });
  });

  it('passes on only the known filters with a value, encoded', () => {
    assert.equal(render.listQuery({}), '');
    assert.equal(
      render.listQuery({ cursor: 'c', target: 'a&b', status: '', other: 'x' }),
      '?target=a%26b&cursor=c',
    );
  });
});
