// @ts-check
/* global URLSearchParams -- in browsers and node alike */
/**
 * The console's views as HTML strings: pure functions of API answers, with no access to the
 * browser, so node's tests import this same file (test/unit/console-render.test.ts). Every
 * value from the API passes through escapeHtml before it reaches the markup: target names,
 * partner errors and evidence are untrusted input, and evidence may hold personal data. The
 * page's Content-Security-Policy (no inline script) is the second line, not the first.
 *
 * Served as is at /console/render.js (a plain ES module: no build step).
 */

/** The contract's request statuses and reasons (the unit test checks them against the OpenAPI document). */
export const REQUEST_STATUSES = [
  'received',
  'scheduled',
  'in_progress',
  'completed',
  'needs_attention',
  'cancelled',
];
export const REASONS = ['gdpr_art17', 'ccpa', 'account_deletion', 'tester_cleanup', 'retention_expiry'];

/** The list filters the console passes on to `GET /v1/erasure-requests`, in display order. */
export const FILTER_KEYS = ['status', 'reason', 'target', 'overdue', 'cursor'];

/** Only a request not yet dispatched can be cancelled; the API decides, this only offers the button. */
const CANCELLABLE = ['received', 'scheduled'];

/** @type {Record<string, string>} */
const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/**
 * Text for element content and double-quoted attribute values. null and undefined are empty;
 * anything but a string is shown as JSON (evidence, journal details).
 * @param {unknown} v
 * @returns {string}
 */
export function escapeHtml(v) {
  const s = v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] ?? c);
}

/** @param {unknown} v a value, or a dash when there is none */
const text = (v) => (v === null || v === undefined || v === '' ? '—' : escapeHtml(v));

/**
 * @param {string} cls the row's class, or none
 * @param {string[]} cells already-escaped HTML
 */
const tr = (cls, cells) =>
  `<tr${cls ? ` class="${cls}"` : ''}>${cells.map((c) => `<td>${c}</td>`).join('')}</tr>`;

/** @param {unknown[]} values */
const row = (values) => tr('', values.map(text));

/** @param {string} label */
const flag = (label) => ` <strong class="flag">${label}</strong>`;

/** @param {string[]} names */
const head = (names) => `<tr>${names.map((n) => `<th>${escapeHtml(n)}</th>`).join('')}</tr>`;

/** @param {[string, string][]} pairs label and already-escaped HTML */
const dl = (pairs) => `<dl>${pairs.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${v}</dd>`).join('')}</dl>`;

/** @param {string} id */
const requestHref = (id) => `#/requests/${encodeURIComponent(id)}`;

/**
 * @typedef {{ view: 'requests', filter: Record<string, string> }
 *   | { view: 'request', id: string }
 *   | { view: 'targets' }
 *   | { view: 'unknown', path: string }} Route
 */

/**
 * The view a location hash names: `#/requests?status=…`, `#/requests/<id>`, `#/targets`.
 * An empty hash is the requests list.
 * @param {string} hash
 * @returns {Route}
 */
export function parseRoute(hash) {
  const raw = hash.replace(/^#/, '');
  const q = raw.indexOf('?');
  const path = q === -1 ? raw : raw.slice(0, q);
  const parts = path.split('/').filter(Boolean);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === 'requests')) {
    const params = new URLSearchParams(q === -1 ? '' : raw.slice(q + 1));
    /** @type {Record<string, string>} */
    const filter = {};
    for (const k of FILTER_KEYS) {
      const v = params.get(k);
      if (v) filter[k] = v;
    }
    return { view: 'requests', filter };
  }
  if (parts.length === 2 && parts[0] === 'requests') {
    try {
      return { view: 'request', id: decodeURIComponent(/** @type {string} */ (parts[1])) };
    } catch {
      return { view: 'unknown', path };
    }
  }
  if (parts.length === 1 && parts[0] === 'targets') return { view: 'targets' };
  return { view: 'unknown', path };
}

/**
 * The query string of a list filter (known keys with a value only), for the API call and
 * for the view's own hash.
 * @param {Record<string, string>} filter
 */
export function listQuery(filter) {
  const params = new URLSearchParams();
  for (const k of FILTER_KEYS) if (filter[k]) params.set(k, filter[k]);
  const s = params.toString();
  return s ? `?${s}` : '';
}

/**
 * @param {string} name
 * @param {string} label
 * @param {string[]} values
 * @param {string | undefined} selected
 * @param {Record<string, string>} [labels]
 */
function select(name, label, values, selected, labels = {}) {
  const options = ['', ...values]
    .map(
      (v) =>
        `<option value="${escapeHtml(v)}"${v === (selected ?? '') ? ' selected' : ''}>${escapeHtml(
          v === '' ? 'any' : (labels[v] ?? v),
        )}</option>`,
    )
    .join('');
  return `<label>${escapeHtml(label)} <select name="${escapeHtml(name)}">${options}</select></label>`;
}

/**
 * @typedef {{ id: string, status: string, reason: string, receivedAt: string, deadline: string,
 *   overdue: boolean, completedAt: string | null }} RequestSummary
 * @typedef {{ items: RequestSummary[], nextCursor: string | null }} RequestPage
 */

/**
 * The requests list (`GET /v1/erasure-requests`): the filter form, a table with overdue
 * requests marked, and a link to the next page carrying the API's `nextCursor`.
 * @param {RequestPage} page
 * @param {Record<string, string>} filter the filters this page was asked with
 */
export function renderRequestList(page, filter) {
  const form = `<form id="filters" class="filters">
${select('status', 'Status', REQUEST_STATUSES, filter['status'])}
${select('reason', 'Reason', REASONS, filter['reason'])}
<label>Target <input name="target" maxlength="200" value="${escapeHtml(filter['target'] ?? '')}"></label>
${select('overdue', 'Overdue', ['true', 'false'], filter['overdue'], { true: 'overdue only', false: 'not overdue' })}
<button type="submit">Filter</button>
</form>`;
  const table =
    page.items.length === 0
      ? `<p class="empty">No requests${Object.keys(filter).length ? ' match these filters' : ''}.</p>`
      : `<table>
${head(['Id', 'Status', 'Reason', 'Received', 'Deadline', 'Completed'])}
${page.items
  .map((r) =>
    tr(r.overdue ? 'overdue' : '', [
      `<a href="${escapeHtml(requestHref(r.id))}"><code>${escapeHtml(r.id)}</code></a>`,
      text(r.status),
      text(r.reason),
      text(r.receivedAt),
      text(r.deadline) + (r.overdue ? flag('overdue') : ''),
      text(r.completedAt),
    ]),
  )
  .join('\n')}
</table>`;
  const { cursor, ...first } = filter;
  const pager = [
    cursor ? `<a class="button" href="${escapeHtml(`#/requests${listQuery(first)}`)}">First page</a>` : '',
    page.nextCursor
      ? `<a class="button" href="${escapeHtml(
          `#/requests${listQuery({ ...first, cursor: page.nextCursor })}`,
        )}">Next page</a>`
      : '',
  ].join(' ');
  return `<h2>Erasure requests</h2>\n${form}\n${table}\n<p class="pager">${pager}</p>`;
}

/**
 * @typedef {{ target: string, state: string, attempts: number, lastError: string | null,
 *   ackedAt: string | null, evidence: unknown, late?: boolean }} Task
 * @typedef {{ seq: number | null, kind: string, at: string, detail: unknown }} JournalEntry
 * @typedef {{ id: string, status: string, reason: string, priority?: string,
 *   identifierTypes?: string[], receivedAt: string, notBefore?: string | null, deadline: string,
 *   overdue: boolean, completedAt: string | null, cancelledAt?: string | null,
 *   linkedTo?: string | null, tasks: Task[], journal: JournalEntry[] }} RequestDetail
 */

/**
 * One request (`GET /v1/erasure-requests/{id}`): its facts, a Cancel button while it may
 * still be cancellable, its tasks and its journal. The report is rendered into `#report`
 * separately (renderReportSummary).
 * @param {RequestDetail} r
 */
export function renderRequestDetail(r) {
  const facts = dl([
    ['Status', text(r.status)],
    ['Reason', text(r.reason)],
    ['Priority', text(r.priority)],
    ['Identifier types', text((r.identifierTypes ?? []).join(', '))],
    ['Received', text(r.receivedAt)],
    ['Not before', text(r.notBefore)],
    ['Deadline', text(r.deadline) + (r.overdue ? flag('overdue') : '')],
    ['Completed', text(r.completedAt)],
    ['Cancelled', text(r.cancelledAt)],
    [
      'Linked to',
      r.linkedTo
        ? `<a href="${escapeHtml(requestHref(r.linkedTo))}"><code>${escapeHtml(r.linkedTo)}</code></a>`
        : '—',
    ],
  ]);
  const cancel = CANCELLABLE.includes(r.status)
    ? `<p><button type="button" data-action="cancel" data-id="${escapeHtml(r.id)}">Cancel request</button></p>`
    : `<p class="note">Only a request not yet dispatched can be cancelled.</p>`;
  const tasks =
    r.tasks.length === 0
      ? '<p class="empty">No tasks: no registered target holds these identifier types.</p>'
      : `<table>
${head(['Target', 'State', 'Attempts', 'Last error', 'Acknowledged', 'Evidence'])}
${r.tasks
  .map((t) =>
    tr(t.late ? 'late' : '', [
      text(t.target) + (t.late ? flag('late') : ''),
      text(t.state),
      text(t.attempts),
      text(t.lastError),
      text(t.ackedAt),
      `<code>${text(t.evidence)}</code>`,
    ]),
  )
  .join('\n')}
</table>`;
  const journal =
    r.journal.length === 0
      ? '<p class="empty">No journal entries.</p>'
      : `<table>
${head(['Seq', 'Kind', 'At', 'Detail'])}
${r.journal.map((j) => row([j.seq, j.kind, j.at, j.detail])).join('\n')}
</table>`;
  return `<p><a href="#/requests">← All requests</a></p>
<h2>Request <code>${escapeHtml(r.id)}</code></h2>
${facts}
${cancel}
<h3>Tasks</h3>
${tasks}
<h3>Journal</h3>
${journal}
<section id="report" aria-live="polite"><p class="loading">Loading the report…</p></section>`;
}

/** @type {Record<string, string>} */
const RESULT_LABEL = {
  deleted: 'deleted',
  not_found: 'not held',
  failed: 'FAILED',
  cancelled: 'cancelled',
  open: 'open',
};

/**
 * @typedef {{ request: { deadline: string, deadlineBasis: string, metDeadline: boolean | null,
 *     overdue: boolean }, generatedAt: string,
 *   summary: { targets: number, deleted: number, not_found: number, failed: number,
 *     cancelled: number, open: number },
 *   targets: { target: string, result: string, attempts: number, ackedAt: string | null,
 *     late: boolean }[],
 *   journal: { intact: boolean, unsealed: number, entries: { intact: boolean | null }[],
 *     verifyWholeChain: string } }} Report
 */

/**
 * The erasure report (`GET /v1/erasure-requests/{id}/report`, JSON) as a summary: outcome
 * counts, the deadline and whether it was met, the journal's chain check, one line per target.
 * @param {Report} rep
 */
export function renderReportSummary(rep) {
  const s = rep.summary;
  const q = rep.request;
  const deadline =
    q.metDeadline === null ? (q.overdue ? 'overdue' : 'open') : q.metDeadline ? 'met' : 'MISSED';
  const broken = rep.journal.entries.filter((e) => e.intact === false).length;
  const chain = rep.journal.intact
    ? `all ${rep.journal.entries.length} entries sealed and intact`
    : `${rep.journal.unsealed} not sealed yet, ${broken} broken`;
  const targets =
    rep.targets.length === 0
      ? '<p class="empty">No targets.</p>'
      : `<table>
${head(['Target', 'Result', 'Attempts', 'Acknowledged', 'Late'])}
${rep.targets.map((t) => row([t.target, RESULT_LABEL[t.result] ?? t.result, t.attempts, t.ackedAt, t.late ? 'yes' : 'no'])).join('\n')}
</table>`;
  return `<h3>Erasure report</h3>
${dl([
  [
    'Targets',
    escapeHtml(
      `${s.targets}: ${s.deleted} deleted, ${s.not_found} not held, ${s.failed} failed, ` +
        `${s.cancelled} cancelled, ${s.open} open`,
    ),
  ],
  ['Deadline', `${text(q.deadline)} (${text(q.deadlineBasis)})`],
  ['Deadline met', `<span class="${deadline === 'met' ? 'ok' : 'flag'}">${escapeHtml(deadline)}</span>`],
  ['Journal', escapeHtml(chain)],
  ['Whole chain', `<code>${escapeHtml(rep.journal.verifyWholeChain)}</code>`],
  ['Generated', text(rep.generatedAt)],
])}
${targets}`;
}

/**
 * @typedef {{ name: string, kind: string, identifierTypes: string[], ackSlaSeconds: number,
 *   paused: boolean }} Target
 */

/**
 * The targets list (`GET /v1/targets`, admin) with a Pause or Resume button per target.
 * @param {{ items: Target[] }} list
 */
export function renderTargets(list) {
  if (list.items.length === 0) return '<h2>Targets</h2>\n<p class="empty">No targets are registered.</p>';
  return `<h2>Targets</h2>
<table>
${head(['Name', 'Kind', 'Identifier types', 'Ack SLA (s)', 'Paused', ''])}
${list.items
  .map((t) =>
    tr(t.paused ? 'paused' : '', [
      text(t.name),
      text(t.kind),
      text(t.identifierTypes.join(', ')),
      text(t.ackSlaSeconds),
      t.paused ? 'yes' : 'no',
      `<button type="button" data-action="${t.paused ? 'resume' : 'pause'}" data-name="${escapeHtml(t.name)}">` +
        `${t.paused ? 'Resume' : 'Pause'}</button>`,
    ]),
  )
  .join('\n')}
</table>`;
}

/**
 * An error for the banner: an RFC 9457 problem's title, status, code and detail.
 * @param {number} status HTTP status, 0 when there was no answer
 * @param {{ title?: unknown, detail?: unknown, code?: unknown } | undefined} problem
 */
export function renderProblem(status, problem) {
  const p = problem ?? {};
  const meta = [status ? `HTTP ${status}` : '', typeof p.code === 'string' ? p.code : '']
    .filter(Boolean)
    .join(', ');
  return `<strong>${text(p.title ?? 'Request failed')}</strong>${meta ? ` (${escapeHtml(meta)})` : ''}${
    p.detail ? `: ${escapeHtml(p.detail)}` : ''
  }`;
}
