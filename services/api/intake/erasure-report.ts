/**
 * The erasure report (`GET /v1/erasure-requests/{id}/report`): what a privacy team hands a
 * regulator or a data subject. Per target where the subject's data was and what became of
 * it (deleted, not held, failed, still open) with the partner's evidence; the deadline and
 * whether it was met; and the request's journal entries with their chain hashes, each
 * checked against its own hash and its predecessor's, so the record can be shown not to
 * have been changed since it was sealed.
 *
 * Never identifier values: the report names identifier types only, like every other read.
 */
import type pg from 'pg';
import { checkRequestEntries } from '../../shared/journal.ts';
import { REASON_POLICY, type Reason } from '../../shared/reasons.ts';
import { getRequest } from './read-requests.ts';

const REPORT_VERSION = 1;

export type TargetResult = 'deleted' | 'not_found' | 'failed' | 'cancelled' | 'open';

export interface ErasureReport {
  reportVersion: number;
  generatedAt: string;
  request: {
    id: string;
    status: string;
    reason: string;
    priority: string;
    identifierTypes: string[];
    receivedAt: string;
    notBefore: string | null;
    deadline: string;
    /** Where the deadline comes from (the reason's policy). */
    deadlineBasis: string;
    completedAt: string | null;
    cancelledAt: string | null;
    linkedTo: string | null;
    /** Completed (or needing attention) by its deadline; null while open or cancelled. */
    metDeadline: boolean | null;
    overdue: boolean;
  };
  summary: { targets: number } & Record<TargetResult, number>;
  targets: {
    target: string;
    kind: string;
    result: TargetResult;
    state: string;
    attempts: number;
    dispatchedAt: string | null;
    ackedAt: string | null;
    lastError: string | null;
    evidence: unknown;
    late: boolean;
  }[];
  journal: {
    /** Every sealed entry below is intact (none is unsealed or broken). */
    intact: boolean;
    unsealed: number;
    entries: {
      seq: number | null;
      kind: string;
      at: string;
      actor: string | null;
      detail: unknown;
      prevHash: string | null;
      hash: string | null;
      intact: boolean | null;
    }[];
    /** How to check the whole chain, not only these entries' links. */
    verifyWholeChain: string;
  };
}

function resultOf(state: string, outcome: string | null): TargetResult {
  if (state === 'acked') return outcome === 'not_found' ? 'not_found' : 'deleted';
  if (state === 'failed') return 'failed';
  if (state === 'cancelled') return 'cancelled';
  return 'open';
}

/** The report of one request; another owner's request answers 404, as GET does. */
export async function buildReport(
  pool: pg.Pool,
  id: string,
  viewer: { owner: string; admin: boolean },
  now: Date = new Date(),
): Promise<ErasureReport> {
  const view = await getRequest(pool, id, viewer, { journal: false });
  const entries = await checkRequestEntries(pool, [view.id, ...(view.linkedTo ? [view.linkedTo] : [])]);
  const targets = view.tasks.map((t) => ({
    target: t.target,
    kind: t.kind,
    result: resultOf(t.state, t.outcome),
    state: t.state,
    attempts: t.attempts,
    dispatchedAt: t.dispatchedAt,
    ackedAt: t.ackedAt,
    lastError: t.lastError,
    evidence: t.evidence,
    late: t.late,
  }));
  const summary = { targets: targets.length, deleted: 0, not_found: 0, failed: 0, cancelled: 0, open: 0 };
  for (const t of targets) summary[t.result] += 1;
  const finished = view.status === 'completed' || view.status === 'needs_attention';
  const unsealed = entries.filter((e) => e.chainSeq === null).length;
  return {
    reportVersion: REPORT_VERSION,
    generatedAt: now.toISOString(),
    request: {
      id: view.id,
      status: view.status,
      reason: view.reason,
      priority: view.priority,
      identifierTypes: view.identifierTypes,
      receivedAt: view.receivedAt,
      notBefore: view.notBefore,
      deadline: view.deadline,
      deadlineBasis: REASON_POLICY[view.reason as Reason]?.basis ?? view.reason,
      completedAt: view.completedAt,
      cancelledAt: view.cancelledAt,
      linkedTo: view.linkedTo,
      metDeadline:
        finished && view.completedAt ? Date.parse(view.completedAt) <= Date.parse(view.deadline) : null,
      overdue: view.overdue,
    },
    summary,
    targets,
    journal: {
      intact: unsealed === 0 && entries.every((e) => e.intact === true),
      unsealed,
      entries: entries.map((e) => ({
        seq: e.chainSeq,
        kind: e.kind,
        at: e.at.toISOString(),
        actor: e.actor,
        detail: e.detail,
        prevHash: e.prevHash,
        hash: e.hash,
        intact: e.intact,
      })),
      verifyWholeChain: 'erasure journal verify',
    },
  };
}

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text for HTML element content and quoted attribute values. */
function escapeHtml(v: unknown): string {
  const s = v === null || v === undefined ? '' : typeof v === 'string' ? v : JSON.stringify(v);
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const RESULT_LABEL: Record<TargetResult, string> = {
  deleted: 'deleted',
  not_found: 'not held',
  failed: 'FAILED',
  cancelled: 'cancelled',
  open: 'open',
};

/**
 * The same report as a standalone HTML page (no scripts, no external resources: the
 * response's Content-Security-Policy allows inline styles only). Every value is escaped:
 * evidence and errors come from partners and are untrusted.
 */
export function renderReportHtml(r: ErasureReport): string {
  const e = escapeHtml;
  const q = r.request;
  const row = (cells: unknown[]) => `<tr>${cells.map((c) => `<td>${e(c)}</td>`).join('')}</tr>`;
  const dl = (pairs: [string, unknown][]) =>
    `<dl>${pairs.map(([k, v]) => `<dt>${e(k)}</dt><dd>${e(v ?? '—')}</dd>`).join('')}</dl>`;
  const deadlineLine =
    q.metDeadline === null ? (q.overdue ? 'overdue' : 'open') : q.metDeadline ? 'met' : 'MISSED';
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Erasure report ${e(q.id)}</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:2em;max-width:72em}
table{border-collapse:collapse;width:100%;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
td{font-family:ui-monospace,monospace;font-size:12px;word-break:break-all}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}
</style>
</head>
<body>
<h1>Erasure report</h1>
${dl([
  ['Request', q.id],
  ['Status', q.status],
  ['Reason', q.reason],
  ['Priority', q.priority],
  ['Identifier types', q.identifierTypes.join(', ')],
  ['Received', q.receivedAt],
  ['Not before', q.notBefore],
  ['Deadline', `${q.deadline} (${q.deadlineBasis})`],
  ['Deadline met', deadlineLine],
  ['Completed', q.completedAt],
  ['Cancelled', q.cancelledAt],
  ['Linked to', q.linkedTo],
  ['Report generated', r.generatedAt],
])}
<h2>Targets</h2>
<p>${e(
    `${r.summary.targets} targets: ${r.summary.deleted} deleted, ${r.summary.not_found} not held, ` +
      `${r.summary.failed} failed, ${r.summary.cancelled} cancelled, ${r.summary.open} open`,
  )}</p>
<table>
<tr><th>Target</th><th>Kind</th><th>Result</th><th>Attempts</th><th>Dispatched</th><th>Acknowledged</th><th>Last error</th><th>Evidence</th></tr>
${r.targets
  .map((t) =>
    row([
      t.target,
      t.kind,
      RESULT_LABEL[t.result],
      t.attempts,
      t.dispatchedAt,
      t.ackedAt,
      t.lastError,
      t.evidence,
    ]),
  )
  .join('\n')}
</table>
<h2>Journal</h2>
<p>${e(
    r.journal.intact
      ? `All ${r.journal.entries.length} entries are sealed and intact (each entry's hash and its link to the one before it).`
      : `Not all entries check out: ${r.journal.unsealed} not sealed yet, ` +
          `${r.journal.entries.filter((x) => x.intact === false).length} broken.`,
  )} The whole chain: <code>${e(r.journal.verifyWholeChain)}</code>.</p>
<table>
<tr><th>Seq</th><th>Kind</th><th>At</th><th>Actor</th><th>Detail</th><th>Hash</th><th>Intact</th></tr>
${r.journal.entries
  .map((j) =>
    row([
      j.seq,
      j.kind,
      j.at,
      j.actor,
      j.detail,
      j.hash,
      j.intact === null ? 'not sealed' : j.intact ? 'yes' : 'NO',
    ]),
  )
  .join('\n')}
</table>
</body>
</html>
`;
}
