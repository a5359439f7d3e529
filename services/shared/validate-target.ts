import { BlockList, isIP } from 'node:net';

/**
 * Validation of the target registry's input (`POST /v1/targets`, `PATCH /v1/targets/{name}`).
 * Pure: the caller passes the identifier types and target names that exist. A target's URL
 * is where the dispatcher sends subject identifiers, so the URL policy here also keeps a
 * registration from aiming the dispatcher at cloud metadata endpoints. It judges what is
 * written; a DNS name can still resolve anywhere later, so the dispatcher must also check
 * the address it actually connects to.
 */

export interface TargetHttp {
  method: 'DELETE' | 'POST' | 'PUT' | 'PATCH'; // default DELETE
  urlTemplate: string; // required; identifiers URL-encoded into path or query, never the host
  headers: Record<string, string>; // default {}; at most 50; values may be secrets
  bodyTemplate: string | null; // default null; JSON, identifiers JSON-escaped; at most 64 KiB
  timeoutMs: number; // per call, 100..120000, default 10000
  rateLimitPerSecond: number; // calls per second, 0.01..100000, default 50
  concurrency: number; // calls in flight, 1..256, default 4
  notFoundStatuses: number[]; // statuses that mean "no such subject", 400..499, default [404]
  // The three below are optional and kept only when given, so targets registered before
  // they existed read back unchanged; the sync dispatcher supplies the defaults.
  auth?: TargetAuth; // credentials the dispatcher adds from its own secrets; absent: none
  maxAttempts?: number; // calls before the task fails, 1..1000; absent: the dispatcher's default
  maxAgeSeconds?: number; // seconds from the first call before it fails, 60..2592000; absent: default
}

/**
 * Credentials by reference: the registry stores only the name of a secret, which the sync
 * dispatcher reads from its environment as ERASURE_SECRET_<secretRef>. `bearer` sends
 * `Authorization: Bearer <secret>`, `basic` sends the secret (`user:password`) as Basic
 * credentials, `hmac_sha256` signs timestamp and body (see services/sync-dispatcher).
 */
export interface TargetAuth {
  type: 'bearer' | 'basic' | 'hmac_sha256';
  secretRef: string; // ^[A-Z][A-Z0-9_]{0,63}$
}

export interface TargetInput {
  name: string;
  kind: 'sync_http' | 'async_event';
  identifierTypes: string[]; // non-empty; the only placeholders its templates may use
  ackSlaSeconds: number; // 1..2592000 (30 days), default 86400
  after: string[]; // targets that must finish first, default []
  http: TargetHttp | null; // required for sync_http, absent for async_event
  verifyUrlTemplate: string | null; // default null; same rules as http.urlTemplate
  paused: boolean; // default false
  owner: string | null; // at most 200 characters, default null
}

export interface FieldProblem {
  code: 'ERR_VALIDATION' | 'ERR_UNKNOWN_FIELD' | 'ERR_INVALID_TARGET' | 'ERR_CONTROL_CHARACTERS';
  field: string;
  message: string;
}

export interface TargetContext {
  identifierTypes: ReadonlySet<string>;
  targets: ReadonlySet<string>;
}

export type TargetResult = { ok: true; value: TargetInput } | { ok: false; problems: FieldProblem[] };

type Json = Record<string, unknown>;
type Encoding = 'url' | 'json' | 'none';
type Check = (s: string) => string | undefined;

const TOP_FIELDS = new Set(
  'name kind identifierTypes ackSlaSeconds after http verifyUrlTemplate paused owner'.split(' '),
);
const HTTP_FIELDS = new Set(
  'method urlTemplate headers bodyTemplate timeoutMs rateLimitPerSecond concurrency notFoundStatuses auth maxAttempts maxAgeSeconds'.split(
    ' ',
  ),
);
const MIN_RATE_PER_SECOND = 0.01;
const AUTH_FIELDS = new Set(['type', 'secretRef']);
const AUTH_TYPES = ['bearer', 'basic', 'hmac_sha256'] as const;
const SECRET_REF = /^[A-Z][A-Z0-9_]{0,63}$/;
const KINDS = ['sync_http', 'async_event'] as const;
const METHODS = ['DELETE', 'POST', 'PUT', 'PATCH'] as const;
const NAME = /^[a-z][a-z0-9_.-]{1,62}$/;
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/;
// The HTTP client derives these from the request itself; a stored override could smuggle
// a second request or reroute the call.
const FORBIDDEN_HEADERS = new Set(['host', 'content-length', 'transfer-encoding', 'connection']);
// A placeholder or a stray "{{" (no group 1); one pattern so validation and rendering agree.
const PLACEHOLDER = /\{\{(?:([A-Za-z0-9_]{1,64})\}\})?/g;
const MAX_BODY_TEMPLATE_BYTES = 64 * 1024;
const MAX_HEADERS = 50;
const METADATA_HOSTS = new Set(
  'metadata.google.internal metadata instance-data instance-data.ec2.internal'.split(' '),
);
// Link-local ranges and metadata addresses. BlockList also matches IPv4-mapped IPv6
// (::ffff:169.254.169.254); NAT64 (64:ff9b::/96) reaches IPv4 too, so those are listed.
const BLOCKED = new BlockList();
BLOCKED.addSubnet('0.0.0.0', 8, 'ipv4');
BLOCKED.addSubnet('169.254.0.0', 16, 'ipv4');
BLOCKED.addAddress('100.100.100.200', 'ipv4'); // Alibaba Cloud's metadata service
BLOCKED.addAddress('::', 'ipv6');
BLOCKED.addSubnet('fe80::', 10, 'ipv6');
BLOCKED.addAddress('fd00:ec2::254', 'ipv6'); // AWS's metadata service over IPv6
BLOCKED.addSubnet('64:ff9b::', 104, 'ipv6');
BLOCKED.addSubnet('64:ff9b::a9fe:0', 112, 'ipv6');
BLOCKED.addAddress('64:ff9b::6464:64c8', 'ipv6');
// Local-use NAT64 (RFC 8215): where the IPv4 address sits depends on the prefix length a
// network chose, so the whole prefix is refused rather than decoded.
BLOCKED.addSubnet('64:ff9b:1::', 48, 'ipv6');
// IPv4-compatible IPv6 (::a.b.c.d, deprecated by RFC 4291, still routed by some stacks).
BLOCKED.addSubnet('::a9fe:0', 112, 'ipv6');
BLOCKED.addAddress('::6464:64c8', 'ipv6');
// C0, DEL and C1 control characters.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
const CONTROL_ALL = new RegExp(CONTROL, 'g');

export function validateTargetCreate(body: unknown, ctx: TargetContext): TargetResult {
  if (!isPlainObject(body)) return notAnObject();
  const c = new Checker();
  c.unknownFields(body, TOP_FIELDS, '');
  const name = c.str('name', body.name, true);
  if (name !== undefined && !NAME.test(name)) c.add('ERR_VALIDATION', 'name', `must match ${NAME.source}`);
  const kind = c.oneOf('kind', body.kind, KINDS);
  const types = c.strings('identifierTypes', body.identifierTypes, true, (t) =>
    ctx.identifierTypes.has(t) ? undefined : `names unknown identifier type "${printable(t)}"`,
  );
  const after = c.strings('after', body.after, false, (t) => {
    if (t === name) return 'names the target itself';
    return ctx.targets.has(t) ? undefined : `names unknown target "${printable(t)}"`;
  });
  const owner = c.str('owner', body.owner);
  if (owner !== undefined && owner.length > 200) c.add('ERR_VALIDATION', 'owner', 'is over 200 characters');
  const verifyUrl = c.str('verifyUrlTemplate', body.verifyUrlTemplate);
  if (verifyUrl !== undefined) c.urlTemplate('verifyUrlTemplate', verifyUrl, types);
  let http: TargetHttp | null = null;
  if (kind === 'async_event' && body.http != null) {
    c.add('ERR_VALIDATION', 'http', 'must be absent for async_event targets');
  } else if (kind === 'sync_http' && body.http == null) {
    c.add('ERR_VALIDATION', 'http', 'is required for sync_http targets');
  } else if (body.http != null) {
    http = parseHttp(c, body.http, types);
  }
  const value: TargetInput = {
    name: name ?? '',
    kind: kind ?? 'async_event',
    identifierTypes: types ?? [],
    ackSlaSeconds: c.int('ackSlaSeconds', body.ackSlaSeconds, 1, 2_592_000, 86_400),
    after: after ?? [],
    http,
    verifyUrlTemplate: verifyUrl ?? null,
    paused: c.bool('paused', body.paused, false),
    owner: owner ?? null,
  };
  // On any problem the fallbacks above (empty name, defaults) are discarded, never returned.
  return c.problems.length > 0 ? fail(c.problems) : { ok: true, value };
}

/**
 * Applies `body` as a JSON Merge Patch (RFC 7396) to the stored target, then validates the
 * whole, so a patch can never leave a target that creation would refuse. `null` removes a
 * field (it falls back to its default); `http` and `http.headers` merge key by key, so one
 * header can be rotated without sending the others again (they may be secrets).
 */
export function validateTargetPatch(existing: TargetInput, body: unknown, ctx: TargetContext): TargetResult {
  if (!isPlainObject(body)) return notAnObject();
  const c = new Checker();
  for (const f of ['name', 'kind'] as const) {
    if (Object.hasOwn(body, f) && body[f] !== existing[f]) {
      c.add('ERR_VALIDATION', f, 'cannot be changed; register a new target instead');
    }
  }
  const merged = mergePatch(existing as unknown as Json, body, 0);
  const result = validateTargetCreate({ ...merged, name: existing.name, kind: existing.kind }, ctx);
  if (c.problems.length === 0) return result;
  return fail(result.ok ? c.problems : [...c.problems, ...result.problems]);
}

/** Returns why the dispatcher may not call `url` (without echoing it), or undefined. */
export function checkPartnerUrl(url: string): string | undefined {
  if (CONTROL.test(url) || url !== url.trim()) return 'has control characters or surrounding spaces';
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return 'is not an absolute URL';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must use http or https';
  // Credentials in a URL end up in logs and error messages; headers are the place for them.
  if (u.username !== '' || u.password !== '') return 'must not contain a username or password';
  const host = u.hostname.replace(/\.+$/, '');
  if (METADATA_HOSTS.has(host)) return 'has a cloud metadata host';
  const ip = host.startsWith('[') ? host.slice(1, -1) : host;
  const family = isIP(ip);
  if (family === 0) return undefined;
  // WHATWG parsing turns 2852039166, 0xA9FEA9FE and 0251.0376.0251.0376 into dotted decimal;
  // comparing with what was written catches those spellings, which exist to dodge filters.
  const written = rawAuthority(url)?.replace(/^.*@/, '').replace(/:\d*$/, '').replace(/\.$/, '');
  if (family === 4 && written?.toLowerCase() !== host)
    return 'must write an IPv4 host as four decimal numbers';
  if (BLOCKED.check(ip, family === 4 ? 'ipv4' : 'ipv6')) return 'has a link-local or cloud metadata host';
  return undefined;
}

/**
 * Whether an address the dispatcher is about to connect to (a DNS answer, not what was
 * written) is link-local or a cloud metadata address: the same list registration checks.
 */
export function isBlockedAddress(ip: string): boolean {
  const family = isIP(ip);
  if (family === 0) return false;
  return BLOCKED.check(ip, family === 4 ? 'ipv4' : 'ipv6');
}

/**
 * Replaces each `{{type}}` with `values[type]`, encoded for where the template is used:
 * 'url' (encodeURIComponent), 'json' (content of a JSON string) or 'none'. Throws on a
 * placeholder without a value or a stray "{{"; validation rules both out beforehand.
 */
export function renderTemplate(template: string, values: Record<string, string>, encode: Encoding): string {
  return template.replace(PLACEHOLDER, (_token, type: string | undefined) => {
    if (type === undefined) throw new Error('template has a "{{" that is not a placeholder');
    // hasOwn: a placeholder like {{constructor}} must not find Object.prototype members.
    const v = Object.hasOwn(values, type) ? values[type] : undefined;
    if (v === undefined) throw new Error(`template placeholder {{${type}}} has no value`);
    if (encode === 'url') return encodeURIComponent(v);
    return encode === 'json' ? JSON.stringify(v).slice(1, -1) : v;
  });
}

function parseHttp(c: Checker, v: unknown, types: string[] | undefined): TargetHttp | null {
  if (!isPlainObject(v)) return c.add('ERR_VALIDATION', 'http', 'must be an object') ?? null;
  c.unknownFields(v, HTTP_FIELDS, 'http.');
  const urlTemplate = c.str('http.urlTemplate', v.urlTemplate, true);
  if (urlTemplate !== undefined) c.urlTemplate('http.urlTemplate', urlTemplate, types);
  const bodyTemplate = c.str('http.bodyTemplate', v.bodyTemplate);
  if (bodyTemplate !== undefined && Buffer.byteLength(bodyTemplate) > MAX_BODY_TEMPLATE_BYTES) {
    c.add('ERR_VALIDATION', 'http.bodyTemplate', `is over ${MAX_BODY_TEMPLATE_BYTES} bytes`);
  } else if (bodyTemplate !== undefined) {
    const used = c.placeholders('http.bodyTemplate', bodyTemplate, types);
    // A non-numeric sample, so {"id":{{user_id}}} (placeholder outside a JSON string)
    // fails now, not when the first non-numeric identifier makes the body invalid JSON.
    try {
      if (used)
        JSON.parse(renderTemplate(bodyTemplate, Object.fromEntries(used.map((t) => [t, 'x'])), 'json'));
    } catch {
      c.add('ERR_INVALID_TARGET', 'http.bodyTemplate', 'is not JSON once filled in (quote each placeholder)');
    }
  }
  // At least one call per 100 s: 1e-300/s means a wait of 1e303 s between calls, beyond
  // what a timer can hold (node cuts such a delay to 1 ms), and a target that slow is a typo.
  const rate = v.rateLimitPerSecond ?? 50;
  if (typeof rate !== 'number' || !(rate >= MIN_RATE_PER_SECOND && rate <= 100_000)) {
    c.add('ERR_VALIDATION', 'http.rateLimitPerSecond', 'must be a number from 0.01 to 100000');
  }
  const statuses = v.notFoundStatuses ?? [404];
  if (!Array.isArray(statuses) || !statuses.every((n) => Number.isInteger(n) && n >= 400 && n <= 499)) {
    c.add('ERR_VALIDATION', 'http.notFoundStatuses', 'must be an array of integers from 400 to 499');
  }
  const headers = parseHeaders(c, v.headers ?? {});
  const out: TargetHttp = {
    method: c.oneOf('http.method', v.method, METHODS, 'DELETE') ?? 'DELETE',
    urlTemplate: urlTemplate ?? '',
    headers,
    bodyTemplate: bodyTemplate ?? null,
    timeoutMs: c.int('http.timeoutMs', v.timeoutMs, 100, 120_000, 10_000),
    rateLimitPerSecond: rate as number,
    concurrency: c.int('http.concurrency', v.concurrency, 1, 256, 4),
    notFoundStatuses: statuses as number[],
  };
  if (v.auth != null) {
    const auth = parseAuth(c, v.auth);
    const sendsAuthorization = auth?.type === 'bearer' || auth?.type === 'basic';
    if (sendsAuthorization && Object.keys(headers).some((h) => h.toLowerCase() === 'authorization'))
      c.add('ERR_VALIDATION', 'http.auth', 'cannot be bearer or basic when http.headers sets Authorization');
    if (auth) out.auth = auth;
  }
  if (v.maxAttempts != null) out.maxAttempts = c.int('http.maxAttempts', v.maxAttempts, 1, 1000, 1);
  if (v.maxAgeSeconds != null)
    out.maxAgeSeconds = c.int('http.maxAgeSeconds', v.maxAgeSeconds, 60, 2_592_000, 60);
  return out;
}

/** A reference to a secret, never the secret: the value lives in the dispatcher's environment. */
function parseAuth(c: Checker, v: unknown): TargetAuth | undefined {
  if (!isPlainObject(v)) return c.add('ERR_VALIDATION', 'http.auth', 'must be an object {type, secretRef}');
  c.unknownFields(v, AUTH_FIELDS, 'http.auth.');
  const type = c.oneOf('http.auth.type', v.type, AUTH_TYPES);
  const secretRef = c.str('http.auth.secretRef', v.secretRef, true);
  if (secretRef !== undefined && !SECRET_REF.test(secretRef))
    c.add('ERR_VALIDATION', 'http.auth.secretRef', `must match ${SECRET_REF.source}`);
  if (type === undefined || secretRef === undefined || !SECRET_REF.test(secretRef)) return undefined;
  return { type, secretRef };
}

/** Header values are often credentials: problems name the header, never the value. */
function parseHeaders(c: Checker, v: unknown): Record<string, string> {
  if (!isPlainObject(v)) return c.add('ERR_VALIDATION', 'http.headers', 'must be an object of strings') ?? {};
  const entries = Object.entries(v);
  if (entries.length > MAX_HEADERS) c.add('ERR_VALIDATION', 'http.headers', `has over ${MAX_HEADERS}`);
  const seen = new Set<string>();
  const out: [string, string][] = [];
  for (const [name, value] of entries) {
    const field = `http.headers.${printable(name)}`;
    const lower = name.toLowerCase();
    if (CONTROL.test(name)) c.add('ERR_CONTROL_CHARACTERS', field, 'is a name with control characters');
    else if (!HEADER_NAME.test(name)) c.add('ERR_VALIDATION', field, 'is not a valid header name');
    else if (FORBIDDEN_HEADERS.has(lower)) c.add('ERR_VALIDATION', field, 'is set by the HTTP client itself');
    // Names are case-insensitive: X-Key and x-key would send one header with two values.
    else if (seen.has(lower)) c.add('ERR_VALIDATION', field, 'is given twice (header names ignore case)');
    seen.add(lower);
    const s = c.str(field, value, true);
    // fetch() refuses header values beyond Latin-1; better to fail at registration.
    if (s !== undefined && /[^\x20-\xff]/.test(s)) c.add('ERR_VALIDATION', field, 'is not Latin-1');
    out.push([name, s ?? '']);
  }
  // fromEntries defines keys, so a header named __proto__ cannot reach the prototype.
  return Object.fromEntries(out);
}

/** Collects problems; its readers return a fallback on error, which the caller then discards. */
class Checker {
  readonly problems: FieldProblem[] = [];
  /** Returns undefined so a reader can record a problem and give up in one statement. */
  add(code: FieldProblem['code'], field: string, what: string): undefined {
    this.problems.push({ code, field, message: `${field} ${what}` });
    return undefined;
  }
  /** Every string the registry keeps passes here, so no control character gets through. */
  str(field: string, v: unknown, needed = false): string | undefined {
    if (v == null) return needed ? this.add('ERR_VALIDATION', field, 'is required') : undefined;
    if (typeof v !== 'string') return this.add('ERR_VALIDATION', field, 'must be a string');
    if (CONTROL.test(v)) return this.add('ERR_CONTROL_CHARACTERS', field, 'contains control characters');
    return v;
  }
  oneOf<T extends string>(field: string, v: unknown, allowed: readonly T[], dflt?: T): T | undefined {
    const s = this.str(field, v ?? dflt, true);
    if (s === undefined || (allowed as readonly string[]).includes(s)) return s as T | undefined;
    return this.add('ERR_VALIDATION', field, `must be one of ${allowed.join(', ')}`);
  }
  int(field: string, v: unknown, min: number, max: number, dflt: number): number {
    if (v == null) return dflt;
    if (typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max) return v;
    this.add('ERR_VALIDATION', field, `must be an integer from ${min} to ${max}`);
    return dflt;
  }
  bool(field: string, v: unknown, dflt: boolean): boolean {
    if (v == null || typeof v === 'boolean') return v ?? dflt;
    this.add('ERR_VALIDATION', field, 'must be true or false');
    return dflt;
  }
  /** Unique strings, each passed to `check`, which returns a problem or undefined. */
  strings(field: string, v: unknown, needed: boolean, check: Check): string[] | undefined {
    if (v == null && !needed) return undefined;
    if (!Array.isArray(v) || (needed && v.length === 0)) {
      return this.add('ERR_VALIDATION', field, `must be a${needed ? ' non-empty' : 'n'} array of strings`);
    }
    const before = this.problems.length;
    const seen = new Set<string>();
    v.forEach((item, i) => {
      const s = this.str(`${field}[${i}]`, item, true);
      const why = s === undefined ? undefined : seen.has(s) ? 'is a repeat' : check(s);
      if (why) this.add('ERR_VALIDATION', `${field}[${i}]`, why);
      if (s !== undefined) seen.add(s);
    });
    return this.problems.length === before ? (v as string[]) : undefined;
  }
  unknownFields(obj: Json, allowed: ReadonlySet<string>, prefix: string): void {
    for (const k of Object.keys(obj)) {
      if (!allowed.has(k)) this.add('ERR_UNKNOWN_FIELD', prefix + printable(k), 'is not a known field');
    }
  }
  urlTemplate(field: string, t: string, types: string[] | undefined): void {
    const used = this.placeholders(field, t, types);
    if (!used) return;
    // Identifiers may pick the path and query, never the host: the host is what was vetted.
    if (rawAuthority(t)?.includes('{{'))
      return this.add('ERR_INVALID_TARGET', field, 'has a placeholder in the host');
    const reason = checkPartnerUrl(renderTemplate(t, Object.fromEntries(used.map((n) => [n, 'x'])), 'url'));
    if (reason) this.add('ERR_INVALID_TARGET', field, reason);
  }
  /** The placeholder names a template uses, or undefined if it has a stray "{{". */
  placeholders(field: string, t: string, types: string[] | undefined): string[] | undefined {
    const found = [...t.matchAll(PLACEHOLDER)].map((m) => m[1]);
    const used = [...new Set(found.filter((n) => n !== undefined))];
    // Without a valid identifierTypes list there is nothing to compare with (reported already).
    for (const n of types ? used : []) {
      if (!types?.includes(n)) this.add('ERR_INVALID_TARGET', field, `uses {{${n}}}, not in identifierTypes`);
    }
    if (!found.includes(undefined)) return used;
    this.add('ERR_INVALID_TARGET', field, 'has a "{{" that does not start a {{identifier_type}} placeholder');
    return undefined;
  }
}

// The authority as WHATWG finds it in an http(s) URL: after the scheme and any run of
// slashes and backslashes, up to the next slash, backslash, "?" or "#".
function rawAuthority(url: string): string | undefined {
  return /^[A-Za-z][A-Za-z0-9+.-]*:[/\\]*([^/\\?#]*)/.exec(url)?.[1];
}

// Recursion stops below http.headers (depth 2): deeper values are taken whole, so a deeply
// nested body cannot exhaust the stack. Map + fromEntries keep "__proto__" an ordinary key.
function mergePatch(target: Json, patch: Json, depth: number): Json {
  const out = new Map(Object.entries(target));
  for (const [k, v] of Object.entries(patch)) {
    const cur = out.get(k);
    if (v === null) out.delete(k);
    else if (depth < 2 && isPlainObject(v))
      out.set(k, mergePatch(isPlainObject(cur) ? cur : {}, v, depth + 1));
    else out.set(k, v);
  }
  return Object.fromEntries(out);
}

function isPlainObject(v: unknown): v is Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** Makes a caller-chosen name safe to put in a message: control characters escaped, length capped. */
function printable(s: string): string {
  const short = s.length > 100 ? `${s.slice(0, 100)}…` : s;
  return short.replace(CONTROL_ALL, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function fail(problems: FieldProblem[]): TargetResult {
  return { ok: false, problems };
}

const notAnObject = () =>
  fail([{ code: 'ERR_VALIDATION', field: '', message: 'body must be a JSON object' }]);
