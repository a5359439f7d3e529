// The OpenAPI document (schemas/openapi.json) against the real server: it is served, it is
// well-formed OpenAPI 3.1, every response of a realistic session matches the schema it
// documents for that status, the routes it lists are exactly the routes the server serves,
// and its problem codes are the code's. So the document and the code cannot drift.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { PROBLEM_CODES } from '../../services/shared/errors.ts';
import { startTestApi, type CallOptions, type TestApi } from '../helpers/api.ts';

interface MediaType {
  schema?: unknown;
}
interface HeaderObject {
  $ref?: string;
  required?: boolean;
}
interface ResponseObject {
  $ref?: string;
  description?: string;
  headers?: Record<string, HeaderObject>;
  content?: Record<string, MediaType>;
}
interface ParameterObject {
  $ref?: string;
  name?: string;
  in?: string;
  required?: boolean;
}
interface Operation {
  operationId?: string;
  security?: Record<string, string[]>[];
  parameters?: ParameterObject[];
  requestBody?: { content?: Record<string, MediaType> };
  responses?: Record<string, ResponseObject>;
  'x-status'?: string;
}
interface OpenApiDoc {
  openapi: string;
  jsonSchemaDialect?: string;
  info: { title: string; version: string; description?: string };
  servers?: { url: string }[];
  security?: Record<string, string[]>[];
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Record<string, unknown>>; securitySchemes?: Record<string, unknown> };
}
type Reply = Awaited<ReturnType<TestApi['call']>>;

const DOC_PATH = join(import.meta.dirname, '..', '..', 'schemas', 'openapi.json');
const doc = JSON.parse(readFileSync(DOC_PATH, 'utf8')) as OpenApiDoc;
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;
const PROBE_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'];

function operations(): { method: string; template: string; op: Operation }[] {
  return Object.entries(doc.paths).flatMap(([template, item]) =>
    METHODS.filter((m) => item[m]).map((m) => ({ method: m.toUpperCase(), template, op: item[m]! })),
  );
}

/** Resolves a local JSON pointer (`#/components/...`) in the document, or undefined. */
function pointer(ref: string): unknown {
  if (!ref.startsWith('#/')) return undefined;
  let node: unknown = doc;
  for (const raw of ref.slice(2).split('/')) {
    const key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

function deref<T extends { $ref?: string }>(obj: T): T {
  let cur = obj;
  for (let hops = 0; cur.$ref !== undefined; hops++) {
    assert.ok(hops < 10, `$ref loop at ${cur.$ref}`);
    const next = pointer(cur.$ref);
    assert.ok(next, `unresolved $ref ${cur.$ref}`);
    cur = next as T;
  }
  return cur;
}

// Ajv sees the component schemas as one schema's $defs; the document's refs are rewritten
// to point there, so sub-schema refs (`.../ErasureRequestInput/properties/...`) work too.
const SCHEMA_BASE = 'urn:erasure-pipeline:openapi';
function rewriteRefs(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(rewriteRefs);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(
    Object.entries(v).map(([k, x]) =>
      k === '$ref' && typeof x === 'string' && x.startsWith('#/components/schemas/')
        ? [k, `${SCHEMA_BASE}#/$defs/${x.slice('#/components/schemas/'.length)}`]
        : [k, rewriteRefs(x)],
    ),
  );
}
const ajv = new Ajv2020.default({ allErrors: true, strict: true, allowUnionTypes: true });
addFormats.default(ajv);
ajv.addSchema({ $id: SCHEMA_BASE, $defs: rewriteRefs(doc.components.schemas) });
const compiled = new Map<string, ReturnType<typeof ajv.compile>>();
function validator(schema: unknown) {
  const key = JSON.stringify(schema);
  let v = compiled.get(key);
  if (!v) {
    v = ajv.compile(rewriteRefs(schema) as object);
    compiled.set(key, v);
  }
  return v;
}

function templateOf(path: string): string | undefined {
  const p = path.split('?')[0]!;
  if (doc.paths[p]) return p;
  return Object.keys(doc.paths).find((t) => {
    if (!t.includes('{')) return false;
    const re = t
      .split(/\{[^}]+\}/)
      .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('[^/]+');
    return new RegExp(`^${re}$`).test(p);
  });
}

function mediaType(headers: Headers): string {
  return (headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
}

/** Fails unless the document lists this status for the operation and the body matches its schema. */
function checkResponse(method: string, template: string, res: Reply): void {
  const op = doc.paths[template]?.[method.toLowerCase()];
  assert.ok(op?.responses, `${method} ${template} is not documented`);
  const documented = op.responses[String(res.status)] ?? op.responses['default'];
  assert.ok(documented, `${method} ${template} answered ${res.status}, which the document does not list`);
  const r = deref(documented);
  const type = mediaType(res.headers);
  const media = r.content?.[type];
  assert.ok(
    media?.schema,
    `${method} ${template} ${res.status} answered ${type}; documented: ${Object.keys(r.content ?? {}).join(', ')}`,
  );
  const validate = validator(media.schema);
  if (!validate(res.body)) {
    assert.fail(
      `${method} ${template} ${res.status} does not match its schema: ${ajv.errorsText(validate.errors, { separator: '; ' })}\n` +
        `body: ${JSON.stringify(res.body).slice(0, 1000)}`,
    );
  }
  for (const [name, h] of Object.entries(r.headers ?? {})) {
    if (deref(h).required)
      assert.ok(res.headers.get(name), `${method} ${template} ${res.status} lacks header ${name}`);
  }
}

function requestSchema(method: string, template: string, contentType = 'application/json'): unknown {
  const op = doc.paths[template]?.[method.toLowerCase()];
  const schema = op?.requestBody?.content?.[contentType]?.schema;
  assert.ok(schema, `${method} ${template} documents no ${contentType} body`);
  return schema;
}

function assertBodyAccepted(method: string, template: string, body: unknown, contentType?: string): void {
  const validate = validator(requestSchema(method, template, contentType));
  if (!validate(body)) {
    assert.fail(
      `the server accepted a ${method} ${template} body the document refuses: ${ajv.errorsText(validate.errors)}\n` +
        JSON.stringify(body),
    );
  }
}

function assertBodyRefused(method: string, template: string, body: unknown): void {
  assert.equal(
    validator(requestSchema(method, template))(body),
    false,
    `the server refused a ${method} ${template} body the document accepts: ${JSON.stringify(body)}`,
  );
}

describe('OpenAPI document', () => {
  let api: TestApi;
  /** `METHOD template` → statuses seen; every one was checked against the document. */
  const seen = new Map<string, Set<number>>();
  let sessionCompleted = false;

  /** One call through the real server, checked against the document. */
  async function exchange(
    method: string,
    path: string,
    opts: CallOptions = {},
    on: TestApi = api,
  ): Promise<Reply> {
    const template = templateOf(path);
    assert.ok(template, `${method} ${path} matches no documented path`);
    const res = await on.call(method, path, opts);
    checkResponse(method, template, res);
    const key = `${method} ${template}`;
    if (!seen.has(key)) seen.set(key, new Set());
    seen.get(key)!.add(res.status);
    if (res.status >= 200 && res.status < 300 && opts.body !== undefined) {
      assertBodyAccepted(method, template, opts.body, opts.headers?.['content-type']);
    }
    return res;
  }

  before(async () => {
    api = await startTestApi();
  });
  after(async () => api?.stop());

  it('is served at /openapi.json, as stored in schemas/openapi.json', async () => {
    const res = await exchange('GET', '/openapi.json', { token: null });
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, doc);
  });

  it('is structurally valid OpenAPI 3.1', () => {
    assert.equal(doc.openapi, '3.1.0');
    assert.equal(doc.jsonSchemaDialect, 'https://json-schema.org/draft/2020-12/schema');
    assert.equal(doc.info.title, 'Erasure pipeline API');
    assert.equal(doc.info.version, '1.0.0');
    assert.ok((doc.info.description ?? '').length > 200, 'info.description summarises the API');
    assert.deepEqual(
      doc.servers?.map((x) => x.url),
      ['http://127.0.0.1:8080'],
    );
    assert.deepEqual(doc.security, [{ bearerAuth: [] }]);
    const bearer = doc.components.securitySchemes?.['bearerAuth'] as
      { type?: string; scheme?: string } | undefined;
    assert.equal(bearer?.type, 'http');
    assert.equal(bearer?.scheme, 'bearer');
    for (const p of Object.keys(doc.paths)) assert.ok(p.startsWith('/'), `path ${p} starts with /`);

    // Every $ref resolves.
    const refs: string[] = [];
    const walk = (v: unknown) => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (typeof v === 'object' && v !== null) {
        for (const [k, x] of Object.entries(v)) {
          if (k === '$ref' && typeof x === 'string') refs.push(x);
          else walk(x);
        }
      }
    };
    walk(doc);
    assert.ok(refs.length > 50);
    for (const r of refs) assert.notEqual(pointer(r), undefined, `$ref ${r} does not resolve`);

    // Operations: unique ids, responses, path parameters, security, problem bodies.
    const ids = new Set<string>();
    const scopes = (doc.components.schemas['Scope']?.['enum'] as string[]) ?? [];
    for (const { method, template, op } of operations()) {
      const name = `${method} ${template}`;
      assert.ok(op.operationId, `${name} has an operationId`);
      assert.ok(!ids.has(op.operationId), `operationId ${op.operationId} is unique`);
      ids.add(op.operationId);
      const statuses = Object.keys(op.responses ?? {});
      assert.ok(statuses.length > 0, `${name} has responses`);
      for (const s of statuses) assert.match(s, /^([1-5]\d\d|[1-5]XX|default)$/, `${name} response key ${s}`);
      const declared = (op.parameters ?? []).map((p) => deref(p)).filter((p) => p.in === 'path');
      const inTemplate = [...template.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      assert.deepEqual(
        declared.map((p) => p.name).sort(),
        inTemplate.sort(),
        `${name} declares its path parameters`,
      );
      for (const p of declared)
        assert.equal(p.required, true, `${name} path parameter ${p.name} is required`);
      if (template.startsWith('/v1/')) {
        const req = op.security?.[0]?.['bearerAuth'];
        assert.ok(req?.length === 1 && scopes.includes(req[0]!), `${name} names the scope it needs`);
      } else {
        assert.deepEqual(op.security, [], `${name} needs no authentication`);
      }
      for (const [status, r] of Object.entries(op.responses ?? {})) {
        const resolved = deref(r);
        assert.ok(resolved.description, `${name} ${status} has a description`);
        if (Number(status) >= 400 && !(template === '/readyz' && status === '503')) {
          assert.deepEqual(
            resolved.content,
            { 'application/problem+json': { schema: { $ref: '#/components/schemas/Problem' } } },
            `${name} ${status} is a problem+json Problem`,
          );
        }
      }
    }

    // Every component schema compiles under Ajv's strict mode, and its examples are valid.
    for (const [name, schema] of Object.entries(doc.components.schemas)) {
      const validate = ajv.getSchema(`${SCHEMA_BASE}#/$defs/${name}`);
      assert.ok(validate, `component schema ${name} compiles`);
      for (const example of (schema['examples'] as unknown[] | undefined) ?? []) {
        assert.ok(
          validate(example),
          `${name} example ${JSON.stringify(example)}: ${ajv.errorsText(validate.errors)}`,
        );
      }
    }
    for (const name of [
      'ErasureRequestInput',
      'Identifier',
      'ErasureRequestAccepted',
      'ErasureRequest',
      'ErasureRequestSummary',
      'Page',
      'Target',
      'TargetInput',
      'TargetPatch',
      'TokenRequest',
      'TokenMinted',
      'IdentifierType',
      'BatchRequest',
      'BatchResult',
      'Problem',
    ]) {
      assert.ok(doc.components.schemas[name], `component ${name} exists`);
    }
  });

  it("lists exactly the code's problem codes", () => {
    const props = doc.components.schemas['Problem']?.['properties'] as Record<string, { enum?: string[] }>;
    assert.deepEqual([...(props['code']?.enum ?? [])].sort(), Object.keys(PROBLEM_CODES).sort());
  });

  it('describes every response of a realistic session', async () => {
    // Operations, without authentication.
    assert.equal((await exchange('GET', '/healthz', { token: null })).status, 200);
    const ready = await exchange('GET', '/readyz', { token: null });
    assert.ok([200, 503].includes(ready.status));
    const metrics = await exchange('GET', '/metrics', { token: null });
    assert.equal(metrics.status, 200);
    assert.match(String(metrics.body), /erasure_api_http_request_duration_seconds/);
    const consolePage = await exchange('GET', '/console', { token: null });
    assert.equal(consolePage.status, 200);

    // Identifier types and targets, as admin.
    const types = await exchange('GET', '/v1/identifier-types');
    assert.equal(types.status, 200);
    assert.ok(types.body.items.some((t: { name: string }) => t.name === 'email'));
    const customType = { name: 'account_ref', maxLength: 64, lowercase: true };
    assert.equal((await exchange('POST', '/v1/identifier-types', { body: customType })).status, 201);
    assert.equal((await exchange('POST', '/v1/identifier-types', { body: customType })).status, 409);

    const events = {
      name: 'profile-events',
      kind: 'async_event',
      identifierTypes: ['user_id', 'email'],
      ackSlaSeconds: 3600,
    };
    assert.equal((await exchange('POST', '/v1/targets', { body: events })).status, 201);
    const shop = {
      name: 'shop-db',
      kind: 'sync_http',
      identifierTypes: ['user_id', 'email'],
      after: ['profile-events'],
      owner: 'shop-team',
      http: {
        method: 'POST',
        urlTemplate: 'https://shop.example/erase?user={{user_id}}',
        headers: { Authorization: 'Bearer not-a-real-secret' },
        bodyTemplate: '{"email":"{{email}}"}',
        timeoutMs: 5000,
        concurrency: 2,
      },
    };
    const created = await exchange('POST', '/v1/targets', { body: shop });
    assert.equal(created.status, 201);
    assert.equal(created.body.http.headers.Authorization, '[redacted]');
    assert.equal((await exchange('POST', '/v1/targets', { body: shop })).status, 409);
    const metadataUrl = {
      ...shop,
      name: 'bad-target',
      http: { urlTemplate: 'http://169.254.169.254/{{user_id}}' },
    };
    const invalid = await exchange('POST', '/v1/targets', { body: metadataUrl });
    assert.equal(invalid.status, 400);
    assert.equal(invalid.body.code, 'ERR_INVALID_TARGET');
    assert.equal(invalid.body.errors[0].field, 'http.urlTemplate');

    assert.equal((await exchange('GET', '/v1/targets')).status, 200);
    assert.equal((await exchange('GET', '/v1/targets/shop-db')).status, 200);
    assert.equal((await exchange('GET', '/v1/targets/no-such-target')).status, 404);
    const patch = { paused: true, http: { headers: { 'X-Rotated': 'also-not-a-secret' } } };
    const patched = await exchange('PATCH', '/v1/targets/shop-db', {
      body: patch,
      headers: { 'content-type': 'application/merge-patch+json' },
    });
    assert.equal(patched.status, 200);
    assert.deepEqual(Object.keys(patched.body.http.headers).sort(), ['Authorization', 'X-Rotated']);
    const unpaused = await exchange('PATCH', '/v1/targets/shop-db', { body: { paused: null } });
    assert.equal(unpaused.body.paused, false);
    const renamed = await exchange('PATCH', '/v1/targets/shop-db', { body: { kind: 'async_event' } });
    assert.equal(renamed.status, 400);
    assert.equal((await exchange('PATCH', '/v1/targets/no-such-target', { body: {} })).status, 404);

    // Tokens.
    const minted = await exchange('POST', '/v1/tokens', {
      body: { scopes: ['submit', 'read'], owner: 'privacy-intake', description: 'contract test' },
    });
    assert.equal(minted.status, 201);
    const intake: string = minted.body.token;
    const ack = await exchange('POST', '/v1/tokens', { body: { scopes: ['ack'], target: 'profile-events' } });
    assert.equal(ack.status, 201);
    assert.equal((await exchange('POST', '/v1/tokens', { body: { scopes: ['ack'] } })).status, 400);
    const readOnly = (
      await exchange('POST', '/v1/tokens', { body: { scopes: ['read'], owner: 'privacy-intake' } })
    ).body.token as string;

    // Submit, resubmit, conflict, linked.
    const subject = {
      identifiers: [
        { type: 'user_id', value: 'contract-subject-1' },
        { type: 'email', value: 'contract-1@b.example' },
      ],
      reason: 'gdpr_art17',
    };
    const submit = (key: string, body: unknown) =>
      exchange('POST', '/v1/erasure-requests', { body, token: intake, headers: { 'idempotency-key': key } });
    const first = await submit('contract-1', subject);
    assert.equal(first.status, 202);
    assert.equal(first.body.status, 'scheduled');
    assert.equal(first.headers.get('location'), first.body.links.self);
    const again = await submit('contract-1', subject);
    assert.equal(again.status, 202);
    assert.equal(again.body.id, first.body.id);
    const conflict = await submit('contract-1', { ...subject, reason: 'ccpa' });
    assert.equal(conflict.status, 409);
    assert.equal(conflict.body.code, 'ERR_IDEMPOTENCY_CONFLICT');
    const linked = await submit('contract-1-linked', {
      ...subject,
      reason: 'account_deletion',
      priority: 'normal',
    });
    assert.equal(linked.status, 202);
    assert.equal(linked.body.linkedTo, first.body.id);
    const graced = await submit('contract-graced', {
      identifiers: [{ type: 'account_ref', value: 'ACCT-0001' }],
      reason: 'retention_expiry',
      notBefore: new Date(Date.now() + 86_400_000).toISOString(),
    });
    assert.equal(graced.status, 202);
    assert.equal(graced.body.status, 'completed', 'no target holds account_ref');

    // Batch with one bad item and one already-submitted item.
    const batch = await exchange('POST', '/v1/erasure-requests:batch', {
      token: intake,
      body: {
        requests: [
          {
            idempotencyKey: 'contract-batch-1',
            identifiers: [{ type: 'user_id', value: 'contract-batch-1' }],
            reason: 'tester_cleanup',
          },
          { idempotencyKey: 'contract-batch-2', identifiers: [{ type: 'fax', value: '1' }], reason: 'ccpa' },
          { idempotencyKey: 'contract-1', ...subject },
        ],
      },
    });
    assert.equal(batch.status, 200);
    assert.deepEqual(
      batch.body.results.map((r: { httpStatus: number; outcome?: string }) => [r.httpStatus, r.outcome]),
      [
        [202, 'created'],
        [400, undefined],
        [202, 'existing'],
      ],
    );
    assert.equal(batch.body.results[1].error.code, 'ERR_UNKNOWN_IDENTIFIER_TYPE');
    const tooMany = await exchange('POST', '/v1/erasure-requests:batch', {
      token: intake,
      body: { requests: Array.from({ length: 10_001 }, () => ({})) },
    });
    assert.equal(tooMany.status, 413);
    assert.equal(tooMany.body.code, 'ERR_BATCH_TOO_LARGE');

    // Read one, as the owner; a linked request shows its primary's tasks.
    const detail = await exchange('GET', `/v1/erasure-requests/${first.body.id}`, { token: intake });
    assert.equal(detail.status, 200);
    assert.deepEqual(
      detail.body.tasks.map((t: { target: string }) => t.target),
      ['profile-events', 'shop-db'],
    );
    const linkedDetail = await exchange('GET', `/v1/erasure-requests/${linked.body.id}`, { token: readOnly });
    assert.equal(linkedDetail.status, 200);
    assert.equal(linkedDetail.body.tasks.length, 2);
    const report = await exchange('GET', `/v1/erasure-requests/${first.body.id}/report`, { token: readOnly });
    assert.equal(report.status, 200);
    assert.equal(report.body.summary.targets, 2);
    const page = await exchange('GET', `/v1/erasure-requests/${first.body.id}/report`, {
      token: readOnly,
      headers: { accept: 'text/html' },
    });
    assert.equal(page.status, 200);
    assert.match(String(page.body), /^<!doctype html>/);

    // List, one per page, following the cursor to the end.
    const ids: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 10; page++) {
      const q: string = cursor ? `?limit=1&cursor=${encodeURIComponent(cursor)}` : '?limit=1';
      const res = await exchange('GET', `/v1/erasure-requests${q}`, { token: intake });
      assert.equal(res.status, 200);
      ids.push(...res.body.items.map((i: { id: string }) => i.id));
      cursor = res.body.nextCursor;
      if (!cursor) break;
    }
    assert.equal(cursor, null);
    assert.equal(new Set(ids).size, 4, 'first, linked, graced and the batch item, each once');
    const filtered = await exchange(
      'GET',
      '/v1/erasure-requests?status=scheduled&reason=gdpr_art17&target=profile-events&overdue=false',
      { token: intake },
    );
    assert.deepEqual(
      filtered.body.items.map((i: { id: string }) => i.id),
      [first.body.id],
    );
    assert.equal(
      (await exchange('GET', '/v1/erasure-requests?cursor=not-a-cursor', { token: intake })).status,
      400,
    );
    assert.equal((await exchange('GET', '/v1/erasure-requests?limit=501', { token: intake })).status, 400);
    assert.equal((await exchange('GET', '/v1/erasure-requests?sort=asc', { token: intake })).status, 400);

    // Cancel: refused while another request is linked; a fresh subject cancels (twice, the same).
    const refused = await exchange('POST', `/v1/erasure-requests/${first.body.id}/cancel`, { token: intake });
    assert.equal(refused.status, 409);
    assert.equal(refused.body.reasonCode, 'has_linked_requests');
    const fresh = await submit('contract-fresh', {
      identifiers: [{ type: 'user_id', value: 'contract-fresh-subject' }],
      reason: 'account_deletion',
    });
    assert.equal(fresh.status, 202);
    const cancelled = await exchange('POST', `/v1/erasure-requests/${fresh.body.id}/cancel`, {
      token: intake,
    });
    assert.equal(cancelled.status, 200);
    assert.equal(cancelled.body.status, 'cancelled');
    const cancelledAgain = await exchange('POST', `/v1/erasure-requests/${fresh.body.id}/cancel`, {
      token: intake,
    });
    assert.equal(cancelledAgain.body.cancelledAt, cancelled.body.cancelledAt);

    // Acks: the token's own target, again (a duplicate), another target, an unknown request.
    const ackBody = { requestId: first.body.id, target: 'profile-events', status: 'deleted', detail: 'done' };
    const ackRes = await exchange('POST', '/v1/acks', { token: ack.body.token, body: ackBody });
    assert.equal(ackRes.status, 200);
    assert.deepEqual(ackRes.body, {
      requestId: first.body.id,
      target: 'profile-events',
      result: 'applied',
      requestStatus: 'in_progress',
    });
    const ackAgain = await exchange('POST', '/v1/acks', { token: ack.body.token, body: ackBody });
    assert.equal(ackAgain.body.result, 'duplicate');
    const otherTarget = await exchange('POST', '/v1/acks', {
      token: ack.body.token,
      body: { ...ackBody, target: 'shop-db' },
    });
    assert.equal(otherTarget.status, 403);
    const unknownRequest = await exchange('POST', '/v1/acks', {
      token: ack.body.token,
      body: { ...ackBody, requestId: randomUUID() },
    });
    assert.equal(unknownRequest.status, 404);
    const badStatus = { ...ackBody, status: 'gone' };
    assert.equal(
      (await exchange('POST', '/v1/acks', { token: ack.body.token, body: badStatus })).status,
      400,
    );
    assertBodyRefused('POST', '/v1/acks', badStatus);
    assertBodyRefused('POST', '/v1/acks', { ...ackBody, note: 'x' });

    // Errors.
    assert.equal(
      (await exchange('GET', `/v1/erasure-requests/${randomUUID()}`, { token: intake })).status,
      404,
    );
    assert.equal(
      (await exchange('POST', `/v1/erasure-requests/${randomUUID()}/cancel`, { token: intake })).status,
      404,
    );
    const anon = await exchange('GET', '/v1/erasure-requests', { token: null });
    assert.equal(anon.status, 401);
    assert.equal(anon.headers.get('www-authenticate'), 'Bearer');
    const unknownToken = await exchange('GET', '/v1/erasure-requests', { token: `ert_${'x'.repeat(43)}` });
    assert.equal(unknownToken.status, 401);
    const forbidden = await exchange('GET', '/v1/targets', { token: intake });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.code, 'ERR_FORBIDDEN');
    const readCannotSubmit = await exchange('POST', '/v1/erasure-requests', {
      token: readOnly,
      body: subject,
      headers: { 'idempotency-key': 'contract-read-only' },
    });
    assert.equal(readCannotSubmit.status, 403);
    const extraField = { ...subject, comment: 'hello' };
    const unknownField = await submit('contract-unknown-field', extraField);
    assert.equal(unknownField.status, 400);
    assert.equal(unknownField.body.code, 'ERR_UNKNOWN_FIELD');
    assert.equal(unknownField.body.field, 'comment');
    assertBodyRefused('POST', '/v1/erasure-requests', extraField);
    const badReason = { ...subject, reason: 'because' };
    assert.equal((await submit('contract-bad-reason', badReason)).body.field, 'reason');
    assertBodyRefused('POST', '/v1/erasure-requests', badReason);
    const tooManyIds = {
      identifiers: Array.from({ length: 21 }, (_, i) => ({ type: 'user_id', value: `contract-${i}` })),
      reason: 'ccpa',
    };
    assert.equal((await submit('contract-21-ids', tooManyIds)).status, 400);
    assertBodyRefused('POST', '/v1/erasure-requests', tooManyIds);
    const noKey = await exchange('POST', '/v1/erasure-requests', { token: intake, body: subject });
    assert.equal(noKey.body.code, 'ERR_IDEMPOTENCY_KEY_MISSING');
    const text = await exchange('POST', '/v1/erasure-requests', {
      token: intake,
      raw: JSON.stringify(subject),
      headers: { 'content-type': 'text/plain', 'idempotency-key': 'contract-text' },
    });
    assert.equal(text.status, 415);
    const malformed = await exchange('POST', '/v1/erasure-requests', {
      token: intake,
      raw: '{"identifiers": [',
      headers: { 'content-type': 'application/json', 'idempotency-key': 'contract-malformed' },
    });
    assert.equal(malformed.body.code, 'ERR_MALFORMED_JSON');
    const huge = await exchange('POST', '/v1/targets', {
      raw: JSON.stringify({ ...events, owner: 'x'.repeat(70_000) }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(huge.status, 413);
    sessionCompleted = true;
  });

  it('documents every route the server serves', async () => {
    // Every method on every documented path, and on the contract's other paths: a route the
    // server answers (anything but its "no route" 404 or a not-implemented 501) is documented.
    // No bodies are sent, so no probe writes anything.
    const samples: Record<string, string> = { id: randomUUID(), name: 'shop-db' };
    const paths = [
      ...Object.keys(doc.paths),
      '/v1/erasure-requests/{id}/report',
      '/v1/erasure-requests/{id}/tasks',
      '/console',
    ];
    for (const template of paths) {
      const path = template.replace(/\{([^}]+)\}/g, (_m, p: string) => samples[p]!);
      for (const method of PROBE_METHODS) {
        const res = await api.call(method, path, { token: api.adminToken });
        const unrouted =
          (res.status === 404 && String(res.body?.detail).startsWith('no route for')) || res.status === 501;
        const documented = Boolean(doc.paths[template]?.[method.toLowerCase()]);
        if (!unrouted)
          assert.ok(documented, `${method} ${template} is served (${res.status}) but not documented`);
        if (documented) checkResponse(method, template, res);
      }
    }
  });

  it('lists no route the server does not serve', () => {
    // Each documented operation answered a success at least once in the session (a planned
    // one its 501), so the document cannot list a route that does not exist.
    assert.ok(sessionCompleted, 'the session above did not complete; see its failure');
    for (const { method, template, op } of operations()) {
      const statuses = [...(seen.get(`${method} ${template}`) ?? [])];
      const expected =
        op['x-status'] === 'planned' ? ['501'] : Object.keys(op.responses ?? {}).filter((s) => /^2/.test(s));
      assert.ok(
        statuses.some((s) => expected.includes(String(s))),
        `${method} ${template} was never exercised to ${expected.join('/')} (saw ${statuses.join(', ') || 'nothing'})`,
      );
    }
  });

  it('documents the rate limit (429 with Retry-After)', async () => {
    const limited = await startTestApi({ RATE_LIMIT_PER_SECOND: '1', RATE_LIMIT_BURST: '2' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 3; i++) {
        statuses.push((await exchange('GET', '/v1/identifier-types', {}, limited)).status);
      }
      assert.deepEqual(statuses, [200, 200, 429]);
    } finally {
      await limited.stop();
    }
  });
});
