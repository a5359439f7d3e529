import { Router, type Request } from 'express';
import type pg from 'pg';
import type { Counter, Histogram } from 'prom-client';
import { ErasureError, problem } from '../../shared/errors.ts';
import type { IdentifierType } from '../../shared/identifiers.ts';
import type { Logger } from '../../shared/logger.ts';
import { REASONS } from '../../shared/reasons.ts';
import { requireScope } from '../auth/authenticate.ts';
import { readJsonBody } from '../http/read-json-body.ts';
import { cancelRequest } from '../intake/cancel-request.ts';
import { buildReport, renderReportHtml } from '../intake/erasure-report.ts';
import { insertRequests, type InsertOutcome, type NewRequest } from '../intake/insert-requests.ts';
import { getRequest, isUuid, listRequests } from '../intake/read-requests.ts';
import { checkIdempotencyKey, validateErasureRequest } from '../intake/validate-request.ts';

export interface ErasureRequestDeps {
  pool: pg.Pool;
  logger: Logger;
  hmacKey: Buffer;
  bodyLimitBytes: number;
  batchBodyLimitBytes: number;
  maxBatchSize: number;
  identifierTypes: () => Promise<ReadonlyMap<string, IdentifierType>>;
  accepted: Counter<'outcome'>;
  /** Accepts one request (group-committed with concurrent ones: see accept-batcher.ts). */
  acceptOne: (owner: string, actor: string, request: NewRequest) => Promise<InsertOutcome>;
  batchSize: Histogram;
}

function viewer(req: Request) {
  const p = req.principal!;
  return { owner: p.owner, admin: p.scopes.includes('admin'), actor: p.tokenId };
}

function accepted(o: Exclude<InsertOutcome, { kind: 'conflict' }>) {
  return {
    id: o.id,
    status: o.status,
    deadline: o.deadline.toISOString(),
    ...(o.linkedTo ? { linkedTo: o.linkedTo } : {}),
    links: { self: `/v1/erasure-requests/${o.id}` },
  };
}

function conflict(): ErasureError {
  return problem('ERR_IDEMPOTENCY_CONFLICT', 'this Idempotency-Key was used with a different body');
}

/**
 * Routes under /v1/erasure-requests, plus `batch`, mounted by the app at the contract's
 * literal path `/v1/erasure-requests:batch` (a colon that Express would read as a parameter).
 */
export function erasureRequestRoutes(deps: ErasureRequestDeps) {
  const { pool } = deps;
  const router = Router();
  const batch = Router();

  router.post('/', requireScope('submit'), async (req, res) => {
    const key = checkIdempotencyKey(req.headers['idempotency-key']);
    const body = await readJsonBody(req, deps.bodyLimitBytes);
    const input = validateErasureRequest(body, await deps.identifierTypes());
    const v = viewer(req);
    const outcome = await deps.acceptOne(v.owner, v.actor, { ...input, idempotencyKey: key });
    deps.accepted.inc({ outcome: outcome.kind });
    if (outcome.kind === 'conflict') throw conflict();
    if (deps.logger.isDebugEnabled()) {
      deps.logger.debug('erasure request accepted', { requestId: outcome.id, outcome: outcome.kind });
    }
    res.status(202).location(`/v1/erasure-requests/${outcome.id}`).json(accepted(outcome));
  });

  batch.post('/', requireScope('submit'), async (req, res) => {
    const body = await readJsonBody(req, deps.batchBodyLimitBytes);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw problem('ERR_VALIDATION', 'the body must be {"requests": [...]}');
    }
    const unknown = Object.keys(body).filter((k) => k !== 'requests');
    if (unknown.length > 0) {
      throw problem('ERR_UNKNOWN_FIELD', `unknown field "${unknown[0]!.slice(0, 64)}"`, {
        field: unknown[0]!.slice(0, 64),
      });
    }
    const items = (body as { requests?: unknown }).requests;
    if (!Array.isArray(items) || items.length === 0) {
      throw problem('ERR_VALIDATION', 'requests must be a non-empty array', { field: 'requests' });
    }
    if (items.length > deps.maxBatchSize) {
      throw problem('ERR_BATCH_TOO_LARGE', `at most ${deps.maxBatchSize} requests per batch`, {
        field: 'requests',
      });
    }
    deps.batchSize.observe(items.length);
    const types = await deps.identifierTypes();
    const results: Record<string, unknown>[] = new Array(items.length);
    const valid: { index: number; request: NewRequest }[] = [];
    items.forEach((item, index) => {
      try {
        if (typeof item !== 'object' || item === null || Array.isArray(item)) {
          throw problem('ERR_VALIDATION', 'each batch item must be a JSON object');
        }
        const key = checkIdempotencyKey(
          (item as { idempotencyKey?: unknown } | null)?.idempotencyKey,
          'idempotencyKey',
        );
        const input = validateErasureRequest(item, types, ['idempotencyKey']);
        valid.push({ index, request: { ...input, idempotencyKey: key } });
      } catch (err) {
        if (!(err instanceof ErasureError)) throw err;
        results[index] = {
          index,
          httpStatus: err.status,
          error: { code: err.code, detail: err.message, ...err.detail },
        };
      }
    });
    if (valid.length > 0) {
      const v = viewer(req);
      const outcomes = await insertRequests(pool, {
        owner: v.owner,
        actor: v.actor,
        hmacKey: deps.hmacKey,
        requests: valid.map((x) => x.request),
      });
      outcomes.forEach((o, j) => {
        const index = valid[j]!.index;
        deps.accepted.inc({ outcome: o.kind });
        if (o.kind === 'conflict') {
          const e = conflict();
          results[index] = { index, httpStatus: e.status, error: { code: e.code, detail: e.message } };
        } else {
          results[index] = { index, httpStatus: 202, outcome: o.kind, ...accepted(o) };
        }
      });
    }
    const failed = results.filter((r) => r['error']).length;
    deps.logger.info('erasure batch accepted', { items: items.length, failed });
    res.status(200).json({ accepted: items.length - failed, failed, results });
  });

  router.get('/', requireScope('read'), async (req, res) => {
    const q = req.query;
    const str = (name: string) => {
      const v = q[name];
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v.length > 200)
        throw problem('ERR_VALIDATION', `${name} must be a single value`);
      // `status=` is a filter left blank, not "no filter": answering every status would hide
      // the client's mistake behind a plausible page.
      if (v === '') throw problem('ERR_VALIDATION', `${name} must not be empty`, { field: name });
      return v;
    };
    const allowed = new Set(['status', 'reason', 'target', 'overdue', 'limit', 'cursor']);
    const extra = Object.keys(q).find((k) => !allowed.has(k));
    if (extra) throw problem('ERR_UNKNOWN_FIELD', `unknown query parameter "${extra.slice(0, 64)}"`);
    const status = str('status');
    if (
      status &&
      !['received', 'scheduled', 'in_progress', 'completed', 'needs_attention', 'cancelled'].includes(status)
    ) {
      throw problem('ERR_VALIDATION', 'status is not a request status', { field: 'status' });
    }
    const reason = str('reason');
    if (reason && !(REASONS as readonly string[]).includes(reason)) {
      throw problem('ERR_VALIDATION', 'reason is not a known reason', { field: 'reason' });
    }
    const overdueRaw = str('overdue');
    if (overdueRaw && !['true', 'false'].includes(overdueRaw)) {
      throw problem('ERR_VALIDATION', 'overdue must be true or false', { field: 'overdue' });
    }
    const limitRaw = str('limit');
    // Digits only: Number() would also read "0x10", "1e2", " 5" and "5.0".
    const limit = limitRaw === undefined ? 50 : /^[0-9]{1,3}$/.test(limitRaw) ? Number(limitRaw) : NaN;
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
      throw problem('ERR_VALIDATION', 'limit must be a whole number from 1 to 500', { field: 'limit' });
    }
    const page = await listRequests(pool, viewer(req), {
      status,
      reason,
      target: str('target'),
      overdue: overdueRaw === undefined ? undefined : overdueRaw === 'true',
      limit,
      cursor: str('cursor'),
    });
    res.json(page);
  });

  router.get('/:id', requireScope('read'), async (req, res) => {
    res.json(await getRequest(pool, String(req.params['id']), viewer(req)));
  });

  // JSON unless the client prefers HTML (a browser, or `Accept: text/html`).
  router.get('/:id/report', requireScope('read'), async (req, res) => {
    const report = await buildReport(pool, String(req.params['id']), viewer(req));
    res.vary('Accept');
    if (req.accepts(['json', 'html']) === 'html') {
      // Partner evidence is untrusted: escaped, and nothing on the page may run or load.
      res.set('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'");
      res.type('html').send(renderReportHtml(report));
    } else {
      res.json(report);
    }
  });

  router.post('/:id/cancel', requireScope('submit'), async (req, res) => {
    const id = String(req.params['id']);
    if (!isUuid(id)) throw problem('ERR_NOT_FOUND', 'no such erasure request');
    const out = await cancelRequest(pool, id, viewer(req));
    deps.logger.info('erasure request cancelled', { requestId: id });
    res.json({ ...out, links: { self: `/v1/erasure-requests/${id}` } });
  });

  return { router, batch };
}
