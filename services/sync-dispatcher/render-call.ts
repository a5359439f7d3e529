/**
 * Turns a task into the HTTP call(s) to make: the target's templates filled in with the
 * request's identifiers, its static headers, the credentials named by `http.auth`, and the
 * headers every call carries. Pure: the secrets and the clock reading are passed in.
 *
 * One call per value: when a template names a type the request has several values of (two
 * email addresses), the task makes one call for each (every combination, at most
 * MAX_CALLS_PER_TASK) and succeeds only when all of them did. Picking one value would skip
 * the others silently.
 *
 * Every call carries `Idempotency-Key`, derived from (request id, target, call index): the
 * same on every retry and from every replica, so a partner can drop a repeat of a call it
 * already carried out (after a timeout, a crash, or a lease that ran out).
 */
import { createHash, createHmac } from 'node:crypto';
import type { Identifier } from '../shared/identifiers.ts';
import { checkPartnerUrl, renderTemplate, type TargetHttp } from '../shared/validate-target.ts';

export const MAX_CALLS_PER_TASK = 20;
/** Environment variable prefix of auth secrets: `http.auth.secretRef` FOO reads ERASURE_SECRET_FOO. */
export const SECRET_ENV_PREFIX = 'ERASURE_SECRET_';
export const HMAC_TIMESTAMP_HEADER = 'X-Erasure-Timestamp';
export const HMAC_SIGNATURE_HEADER = 'X-Erasure-Signature';

export interface RenderedCall {
  readonly method: TargetHttp['method'];
  /** Contains identifier values: never logged, never stored. */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer | null;
  readonly idempotencyKey: string;
}

export type RenderResult =
  | { ok: true; calls: RenderedCall[] }
  | {
      ok: false;
      cause: 'missing_identifier' | 'missing_secret' | 'too_many_calls' | 'invalid_url';
      message: string;
    };

export interface RenderInput {
  readonly requestId: string;
  readonly target: string;
  readonly http: TargetHttp;
  readonly identifiers: readonly Identifier[];
  /** Secret values by secretRef. */
  readonly secrets: ReadonlyMap<string, string>;
  /** Epoch milliseconds, for the HMAC timestamp. */
  readonly nowMs: number;
}

const PLACEHOLDER_NAMES = /\{\{([A-Za-z0-9_]{1,64})\}\}/g;
// Set by the dispatcher on every call; a stored header of the same name (any case) is dropped.
const OWN_HEADERS = ['idempotency-key', 'x-erasure-request-id', 'x-erasure-target'];

/** Stable per (request, target): the same across retries and replicas, opaque to the partner. */
export function idempotencyKeyFor(requestId: string, target: string, callIndex = 0): string {
  const base = createHash('sha256').update(`${requestId}\n${target}`).digest('hex').slice(0, 32);
  return callIndex === 0 ? base : `${base}-${callIndex + 1}`;
}

/** Hex HMAC-SHA256 of `<timestamp>.<body>`, what the `v1=` signature carries. */
export function hmacSignature(secret: string, timestamp: string, body: Buffer | null): string {
  return createHmac('sha256', secret)
    .update(`${timestamp}.`)
    .update(body ?? Buffer.alloc(0))
    .digest('hex');
}

export function renderCalls(input: RenderInput): RenderResult {
  const { http } = input;
  const used = new Set<string>();
  for (const t of [http.urlTemplate, http.bodyTemplate ?? ''])
    for (const m of t.matchAll(PLACEHOLDER_NAMES)) used.add(m[1]!);

  // Values per type, in the request's order (stable across retries, so call i keeps its key).
  const valuesOf = new Map<string, string[]>();
  for (const id of input.identifiers) {
    const list = valuesOf.get(id.type) ?? [];
    if (!list.includes(id.value)) list.push(id.value);
    valuesOf.set(id.type, list);
  }
  const types = [...used].sort();
  let combos: Record<string, string>[] = [{}];
  for (const type of types) {
    const values = valuesOf.get(type);
    if (!values || values.length === 0)
      return {
        ok: false,
        cause: 'missing_identifier',
        message: `the request has no ${type} identifier, which the target's template needs`,
      };
    combos = combos.flatMap((c) => values.map((v) => ({ ...c, [type]: v })));
    if (combos.length > MAX_CALLS_PER_TASK)
      return {
        ok: false,
        cause: 'too_many_calls',
        message: `the request's identifiers would need over ${MAX_CALLS_PER_TASK} calls to this target`,
      };
  }

  let secret: string | undefined;
  if (http.auth) {
    secret = input.secrets.get(http.auth.secretRef);
    if (secret === undefined)
      return {
        ok: false,
        cause: 'missing_secret',
        message: `the dispatcher has no secret ${SECRET_ENV_PREFIX}${http.auth.secretRef} for this target's auth`,
      };
  }

  const calls: RenderedCall[] = [];
  for (const [i, values] of combos.entries()) {
    const url = renderTemplate(http.urlTemplate, values, 'url');
    // Registration vetted the template; this vets what it became (never echoing the URL).
    const reason = checkPartnerUrl(url);
    if (reason) return { ok: false, cause: 'invalid_url', message: `the target's URL ${reason}` };
    const body =
      http.bodyTemplate === null ? null : Buffer.from(renderTemplate(http.bodyTemplate, values, 'json'));
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(http.headers))
      if (!OWN_HEADERS.includes(name.toLowerCase())) headers[name] = value;
    const hasContentType = Object.keys(headers).some((h) => h.toLowerCase() === 'content-type');
    if (body !== null && !hasContentType) headers['Content-Type'] = 'application/json';
    const idempotencyKey = idempotencyKeyFor(input.requestId, input.target, combos.length === 1 ? 0 : i);
    headers['Idempotency-Key'] = idempotencyKey;
    headers['X-Erasure-Request-Id'] = input.requestId;
    headers['X-Erasure-Target'] = input.target;
    if (http.auth && secret !== undefined)
      Object.assign(headers, authHeaders(http.auth.type, secret, body, input.nowMs));
    calls.push({ method: http.method, url, headers, body, idempotencyKey });
  }
  return { ok: true, calls };
}

function authHeaders(
  type: NonNullable<TargetHttp['auth']>['type'],
  secret: string,
  body: Buffer | null,
  nowMs: number,
): Record<string, string> {
  if (type === 'bearer') return { Authorization: `Bearer ${secret}` };
  if (type === 'basic') return { Authorization: `Basic ${Buffer.from(secret, 'utf8').toString('base64')}` };
  const timestamp = String(Math.floor(nowMs / 1000));
  return {
    [HMAC_TIMESTAMP_HEADER]: timestamp,
    [HMAC_SIGNATURE_HEADER]: `v1=${hmacSignature(secret, timestamp, body)}`,
  };
}
