import type { ErrorRequestHandler, Request, Response } from 'express';
import { ErasureError, PROBLEM_CODES, type ProblemCode } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';

/**
 * The RFC 9457 problem document for `code`: what sendProblem answers, and what
 * harden-server.ts writes itself where Express never sees the request. `extra` members
 * follow the standard ones; `status` defaults to the code's own.
 */
export function problemDocument(
  code: ProblemCode,
  detail: string,
  extra: Record<string, unknown> = {},
  status: number = PROBLEM_CODES[code].status,
): Record<string, unknown> {
  return {
    type: `https://erasure.dev/problems/${code}`,
    title: PROBLEM_CODES[code].title,
    status,
    code,
    detail,
    ...extra,
  };
}

export function sendProblem(
  res: Response,
  code: ProblemCode,
  detail: string,
  extra: Record<string, unknown> = {},
  status: number = PROBLEM_CODES[code].status,
): void {
  res
    .status(status)
    .type('application/problem+json')
    .json(problemDocument(code, detail, extra, status));
}

/**
 * Errors meaning a dependency is down or refusing us, not that this request is wrong:
 * answered 503 with Retry-After so clients retry (with the same Idempotency-Key).
 * Connection refused; PostgreSQL shutting down or starting (57P01, 57P03), out of
 * connections (53300), connection lost or never made (08006, 08001); and a PostgreSQL that
 * refuses our credentials or lacks our database (28P01, 28000, 3D000): a deployment fault,
 * but the request was fine and nothing was written. A deadlock or serialization failure
 * (40P01, 40001) that outlasted its statement's own retries: the same request again
 * succeeds (an accept: what committed before is found again by its Idempotency-Key).
 */
const UNAVAILABLE = new Set([
  'ECONNREFUSED',
  '57P01',
  '57P03',
  '53300',
  '08006',
  '08001',
  '28P01',
  '28000',
  '3D000',
  '40P01',
  '40001',
]);

/**
 * The client went away mid-request: it closed or reset the connection while its body was
 * being read, or the server closed it (request timeout, see harden-server.ts). Nothing is
 * wrong on our side, and there is no one to answer.
 */
function clientWentAway(err: { code?: string }, req: Request): boolean {
  return err.code === 'ECONNRESET' && !req.complete;
}

/**
 * Every error leaves as RFC 9457 problem+json with a stable code. Known errors keep their
 * status; anything unexpected is logged (without the request body) and answered 500, and a
 * dropped database connection answers 503 so clients retry. Nothing is written to a socket
 * that is already closed.
 */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) return;
    const e = err as { type?: string; status?: number; code?: string };
    if (clientWentAway(e, req)) {
      logger.debug('client went away before its request was read', {
        code: 'ERR_CLIENT_ABORTED',
        method: req.method,
        route: req.route?.path,
      });
      return;
    }
    // A closed socket (answered 408 by harden-server.ts, or reset) takes no answer.
    const send: typeof sendProblem = (...args) => {
      // req.socket is null once the request stream was destroyed.
      if (req.socket && !req.socket.destroyed) sendProblem(...args);
    };
    if (err instanceof ErasureError && err.code in PROBLEM_CODES) {
      return send(res, err.code as ProblemCode, err.message, err.detail ?? {}, err.status);
    }
    // body-parser style errors from any middleware that still uses it.
    if (e.type === 'entity.too.large') return send(res, 'ERR_BODY_TOO_LARGE', 'the body is too large');
    if (e.type === 'entity.parse.failed')
      return send(res, 'ERR_MALFORMED_JSON', 'the body is not valid JSON');
    // Express's own client errors, e.g. a path parameter that is not valid percent-encoding.
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return send(res, 'ERR_VALIDATION', 'the request could not be parsed', {}, 400);
    }
    const unavailable = UNAVAILABLE.has(e.code ?? '');
    logger.error('request failed', {
      code: unavailable ? 'ERR_UNAVAILABLE' : 'ERR_INTERNAL',
      method: req.method,
      route: req.route?.path,
      error: err instanceof Error ? { name: err.name, message: err.message, code: e.code } : String(err),
    });
    if (unavailable) {
      res.setHeader('Retry-After', '1');
      return send(res, 'ERR_UNAVAILABLE', 'a dependency is unavailable; retry later');
    }
    send(res, 'ERR_INTERNAL', 'internal error');
  };
}
