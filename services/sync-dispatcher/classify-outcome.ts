/**
 * Outcome rules of a sync_http call, as one table (STYLE: foreign errors are classified once,
 * at the adapter). Pure: the caller passes the clock reading for Retry-After dates.
 *
 *   2xx                                   → deleted (body kept as evidence)
 *   404 or the target's notFoundStatuses  → not_found
 *   408, 425, 429, 5xx, timeout, network  → retry (Retry-After honoured, capped)
 *   other 4xx                             → fail (the response recorded for a person)
 *   3xx the client would not follow       → fail (see send-call.ts for which it follows)
 *   an address on the blocked list        → fail (the registration check was dodged by DNS)
 *
 * `health` is what the call says about the target, for the circuit breaker and the adaptive
 * limiter: a 4xx is a healthy target refusing one request, not an unhealthy target.
 */
import { sanitizeDetail } from '../shared/apply-ack.ts';
import { parseRetryAfter } from './parse-retry-after.ts';

/** What the HTTP client observed (send-call.ts); never contains request data. */
export type CallResult =
  | { kind: 'response'; status: number; retryAfter: string | null; body: string }
  | { kind: 'redirect_refused'; status: number; reason: 'other_host' | 'method_change' | 'too_many' }
  | { kind: 'timeout'; timeoutMs: number }
  | { kind: 'network'; code: string }
  | { kind: 'blocked_address' }
  | { kind: 'aborted' };

/** Why a task is retried; stable strings, used in the journal and as a metric label. */
export type RetryCause = 'http_408' | 'http_425' | 'http_429' | 'http_5xx' | 'timeout' | 'network';
/** Why a task failed; stable strings, used in the journal and as a metric label. */
export type FailCause =
  | 'http_4xx'
  | 'unexpected_status'
  | 'redirect_other_host'
  | 'redirect_method_change'
  | 'redirect_limit'
  | 'blocked_address';

export type CallOutcome =
  | { class: 'deleted' | 'not_found'; httpStatus: number; detail: string | null }
  | {
      class: 'retry';
      cause: RetryCause;
      httpStatus: number | null;
      /** The partner's Retry-After, clamped to the cap; undefined when absent or unusable. */
      retryAfterMs: number | undefined;
      message: string;
    }
  | { class: 'fail'; cause: FailCause; httpStatus: number | null; detail: string | null; message: string }
  | { class: 'released' };

/** ok: a sound answer; error: counts against the breaker; throttled: the target asks us to slow down. */
export interface CallHealth {
  readonly breaker: 'success' | 'failure' | 'ignore';
  /** 429, 503 or a timeout: the adaptive limiter lowers the rate. */
  readonly congested: boolean;
}

export interface Classified {
  readonly outcome: CallOutcome;
  readonly health: CallHealth;
}

const OK: CallHealth = { breaker: 'success', congested: false };
const FAILURE: CallHealth = { breaker: 'failure', congested: false };
const IGNORE: CallHealth = { breaker: 'ignore', congested: false };

export function classifyCall(
  result: CallResult,
  opts: { notFoundStatuses: readonly number[]; nowMs: number; retryAfterCapMs: number },
): Classified {
  switch (result.kind) {
    case 'aborted':
      return { outcome: { class: 'released' }, health: IGNORE };
    case 'timeout':
      return {
        outcome: retry(
          'timeout',
          null,
          undefined,
          `no answer within the target's timeout (${result.timeoutMs} ms)`,
        ),
        health: { breaker: 'failure', congested: true },
      };
    case 'network':
      return {
        outcome: retry('network', null, undefined, `network error ${safeCode(result.code)}`),
        health: FAILURE,
      };
    case 'blocked_address':
      return {
        outcome: fail(
          'blocked_address',
          null,
          null,
          'the target host resolved to a link-local or cloud metadata address; the call was not made',
        ),
        health: IGNORE,
      };
    case 'redirect_refused':
      return { outcome: redirectFailure(result.status, result.reason), health: OK };
    case 'response':
      return classifyResponse(result, opts);
  }
}

function classifyResponse(
  r: Extract<CallResult, { kind: 'response' }>,
  opts: { notFoundStatuses: readonly number[]; nowMs: number; retryAfterCapMs: number },
): Classified {
  const s = r.status;
  if (s >= 200 && s <= 299)
    return { outcome: { class: 'deleted', httpStatus: s, detail: sanitizeDetail(r.body) }, health: OK };
  if (s === 404 || opts.notFoundStatuses.includes(s))
    return { outcome: { class: 'not_found', httpStatus: s, detail: sanitizeDetail(r.body) }, health: OK };
  const after = () => parseRetryAfter(r.retryAfter, opts.nowMs, opts.retryAfterCapMs);
  if (s === 408)
    return { outcome: retry('http_408', s, after(), 'the target answered 408'), health: FAILURE };
  if (s === 425) return { outcome: retry('http_425', s, after(), 'the target answered 425'), health: IGNORE };
  if (s === 429)
    return {
      outcome: retry('http_429', s, after(), 'the target answered 429 (too many requests)'),
      health: { breaker: 'ignore', congested: true },
    };
  if (s >= 500 && s <= 599)
    return {
      outcome: retry('http_5xx', s, after(), `the target answered ${s}`),
      health: { breaker: 'failure', congested: s === 503 },
    };
  const detail = sanitizeDetail(r.body);
  if (s >= 400 && s <= 499) {
    const said = detail ? `: ${detail}` : '';
    return {
      outcome: fail('http_4xx', s, detail, `the target refused the call with ${s}${said}`),
      health: OK,
    };
  }
  // 1xx cannot reach here (the client consumes them); 3xx the client did not treat as a redirect.
  return {
    outcome: fail('unexpected_status', s, detail, `the target answered an unexpected ${s}`),
    health: OK,
  };
}

function redirectFailure(
  status: number,
  reason: Extract<CallResult, { kind: 'redirect_refused' }>['reason'],
): CallOutcome {
  if (reason === 'other_host')
    return fail(
      'redirect_other_host',
      status,
      null,
      `the target redirected (${status}) to another host; redirects are never followed to another host`,
    );
  if (reason === 'method_change')
    return fail(
      'redirect_method_change',
      status,
      null,
      `the target redirected (${status}) in a way that changes the method; only 307 and 308 are followed`,
    );
  return fail('redirect_limit', status, null, `the target redirected (${status}) too many times`);
}

function retry(
  cause: RetryCause,
  httpStatus: number | null,
  retryAfterMs: number | undefined,
  message: string,
): CallOutcome {
  return { class: 'retry', cause, httpStatus, retryAfterMs, message };
}

function fail(
  cause: FailCause,
  httpStatus: number | null,
  detail: string | null,
  message: string,
): CallOutcome {
  return { class: 'fail', cause, httpStatus, detail, message: sanitizeDetail(message) ?? message };
}

/** Node error codes are short upper-case words; anything else is not repeated verbatim. */
function safeCode(code: string): string {
  return /^[A-Z0-9_]{2,40}$/.test(code) ? code : 'UNKNOWN';
}

/** A metric label for what one call came back with: a few fixed words, never free text. */
export function callClass(result: CallResult, notFoundStatuses: readonly number[]): string {
  switch (result.kind) {
    case 'response': {
      const s = result.status;
      if (s === 404 || notFoundStatuses.includes(s)) return 'not_found';
      if ([408, 425, 429].includes(s)) return String(s);
      return `${Math.floor(s / 100)}xx`;
    }
    case 'redirect_refused':
      return 'redirect_refused';
    case 'blocked_address':
      return 'blocked';
    default:
      return result.kind; // timeout, network, aborted
  }
}
