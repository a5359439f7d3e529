import type { ErrorRequestHandler, Response } from 'express';
import { ErasureError, PROBLEM_CODES, type ProblemCode } from '../../shared/errors.ts';
import type { Logger } from '../../shared/logger.ts';

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
    .json({
      type: `https://erasure.dev/problems/${code}`,
      title: PROBLEM_CODES[code].title,
      status,
      code,
      detail,
      ...extra,
    });
}

/**
 * Every error leaves as RFC 9457 problem+json with a stable code. Known errors keep their
 * status; anything unexpected is logged (without the request body) and answered 500, and a
 * dropped database connection answers 503 so clients retry.
 */
export function problemHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    if (res.headersSent) return;
    if (err instanceof ErasureError && err.code in PROBLEM_CODES) {
      sendProblem(res, err.code as ProblemCode, err.message, err.detail ?? {}, err.status);
      return;
    }
    // body-parser style errors from any middleware that still uses it.
    const e = err as { type?: string; status?: number; code?: string };
    if (e.type === 'entity.too.large') return sendProblem(res, 'ERR_BODY_TOO_LARGE', 'the body is too large');
    if (e.type === 'entity.parse.failed')
      return sendProblem(res, 'ERR_MALFORMED_JSON', 'the body is not valid JSON');
    // Express's own client errors, e.g. a path parameter that is not valid percent-encoding.
    if (typeof e.status === 'number' && e.status >= 400 && e.status < 500) {
      return sendProblem(res, 'ERR_VALIDATION', 'the request could not be parsed', {}, 400);
    }
    const unavailable = ['ECONNREFUSED', '57P01', '57P03', '53300', '08006', '08001'].includes(e.code ?? '');
    logger.error('request failed', {
      code: unavailable ? 'ERR_UNAVAILABLE' : 'ERR_INTERNAL',
      method: req.method,
      route: req.route?.path,
      error: err instanceof Error ? { name: err.name, message: err.message, code: e.code } : String(err),
    });
    if (unavailable) {
      res.setHeader('Retry-After', '1');
      return sendProblem(res, 'ERR_UNAVAILABLE', 'a dependency is unavailable; retry later');
    }
    sendProblem(res, 'ERR_INTERNAL', 'internal error');
  };
}
