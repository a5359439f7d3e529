// Rendering a sync call (render-call.ts), the target registration's auth fields and the
// dispatcher's configuration loader.
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../../services/shared/errors.ts';
import {
  isBlockedAddress,
  validateTargetCreate,
  type TargetHttp,
} from '../../services/shared/validate-target.ts';
import { loadSyncDispatcherConfig } from '../../services/sync-dispatcher/index.ts';
import {
  idempotencyKeyFor,
  renderCalls,
  type RenderInput,
} from '../../services/sync-dispatcher/render-call.ts';

const REQUEST = '3f2b8a52-5d55-4a3f-9d6e-0c1f6a1b2c3d';
const http = (extra: Partial<TargetHttp> = {}): TargetHttp => ({
  method: 'POST',
  urlTemplate: 'https://shop.example/users/{{user_id}}/erase',
  headers: { 'X-Source': 'erasure', 'idempotency-key': 'stored-one-is-dropped' },
  bodyTemplate: '{"email":"{{email}}"}',
  timeoutMs: 1000,
  rateLimitPerSecond: 10,
  concurrency: 2,
  notFoundStatuses: [404],
  ...extra,
});
const input = (extra: Partial<RenderInput> = {}): RenderInput => ({
  requestId: REQUEST,
  target: 'shop-db',
  http: http(),
  identifiers: [
    { type: 'user_id', value: 'u/42 ?' },
    { type: 'email', value: 'a"b@example.org' },
  ],
  secrets: new Map([['SHOP', 's3cret']]),
  nowMs: 1_700_000_000_123,
  ...extra,
});
const ok = (r: ReturnType<typeof renderCalls>) => {
  assert.ok(r.ok, JSON.stringify(r));
  return r.calls;
};

describe('renderCalls', () => {
  it('fills URL (URL-encoded) and body (JSON-escaped), keeps static headers, adds its own', () => {
    const [call, ...rest] = ok(renderCalls(input()));
    assert.equal(rest.length, 0);
    assert.equal(call!.method, 'POST');
    assert.equal(call!.url, 'https://shop.example/users/u%2F42%20%3F/erase');
    assert.deepEqual(JSON.parse(call!.body!.toString()), { email: 'a"b@example.org' });
    assert.equal(call!.headers['X-Source'], 'erasure');
    assert.equal(call!.headers['Content-Type'], 'application/json');
    assert.equal(call!.headers['Idempotency-Key'], idempotencyKeyFor(REQUEST, 'shop-db'));
    assert.equal(call!.headers['idempotency-key'], undefined, 'a stored header cannot replace the key');
    assert.equal(call!.headers['X-Erasure-Request-Id'], REQUEST);
  });

  it('derives the Idempotency-Key from request and target only: the same on every retry and replica', () => {
    const a = ok(renderCalls(input({ nowMs: 1 })))[0]!.idempotencyKey;
    const b = ok(renderCalls(input({ nowMs: 999_999 })))[0]!.idempotencyKey;
    assert.equal(a, b);
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.notEqual(a, idempotencyKeyFor(REQUEST, 'other-target'));
  });

  it('adds bearer, basic and HMAC-SHA256 credentials from the secret named by reference', () => {
    const bearer = ok(
      renderCalls(input({ http: http({ auth: { type: 'bearer', secretRef: 'SHOP' } }) })),
    )[0]!;
    assert.equal(bearer.headers['Authorization'], 'Bearer s3cret');
    const basic = ok(
      renderCalls(
        input({
          http: http({ auth: { type: 'basic', secretRef: 'SHOP' } }),
          secrets: new Map([['SHOP', 'svc:pa:ss']]),
        }),
      ),
    )[0]!;
    assert.equal(basic.headers['Authorization'], `Basic ${Buffer.from('svc:pa:ss').toString('base64')}`);
    const signed = ok(
      renderCalls(input({ http: http({ auth: { type: 'hmac_sha256', secretRef: 'SHOP' } }) })),
    )[0]!;
    assert.equal(signed.headers['X-Erasure-Timestamp'], '1700000000');
    const expected = createHmac('sha256', 's3cret')
      .update(`1700000000.${signed.body!.toString()}`)
      .digest('hex');
    assert.equal(signed.headers['X-Erasure-Signature'], `v1=${expected}`);
    assert.equal(signed.headers['Authorization'], undefined);
  });

  it('does not call when the secret is missing (retried), or the request lacks a type the template needs', () => {
    const noSecret = renderCalls(
      input({ http: http({ auth: { type: 'bearer', secretRef: 'NOPE' } }), secrets: new Map() }),
    );
    assert.deepEqual(noSecret.ok ? 'ok' : noSecret.cause, 'missing_secret');
    assert.match(noSecret.ok ? '' : noSecret.message, /ERASURE_SECRET_NOPE/);
    const noEmail = renderCalls(input({ identifiers: [{ type: 'user_id', value: '42' }] }));
    assert.equal(noEmail.ok ? 'ok' : noEmail.cause, 'missing_identifier');
    assert.doesNotMatch(JSON.stringify(noEmail), /42/, 'no identifier value in the message');
  });

  it('makes one call per value when the request has several of a type the template uses', () => {
    const calls = ok(
      renderCalls(
        input({
          http: http({ urlTemplate: 'https://shop.example/erase?email={{email}}', bodyTemplate: null }),
          identifiers: [
            { type: 'email', value: 'a@example.org' },
            { type: 'user_id', value: '1' },
            { type: 'email', value: 'b@example.org' },
          ],
        }),
      ),
    );
    assert.deepEqual(
      calls.map((c) => c.url),
      [
        'https://shop.example/erase?email=a%40example.org',
        'https://shop.example/erase?email=b%40example.org',
      ],
    );
    const keys = calls.map((c) => c.idempotencyKey);
    assert.equal(new Set(keys).size, 2, 'each call its own key');
    assert.ok(keys.every((k) => k.startsWith(idempotencyKeyFor(REQUEST, 'shop-db'))));
    assert.equal(calls[0]!.body, null);
    assert.equal(calls[0]!.headers['Content-Type'], undefined);
  });

  it('refuses too many calls for one task', () => {
    const identifiers = Array.from({ length: 21 }, (_, i) => ({ type: 'email', value: `u${i}@example.org` }));
    const r = renderCalls(
      input({ http: http({ urlTemplate: 'https://shop.example/{{email}}' }), identifiers }),
    );
    assert.equal(r.ok ? 'ok' : r.cause, 'too_many_calls');
  });
});

describe('target registration: auth, maxAttempts, maxAgeSeconds', () => {
  const ctx = { identifierTypes: new Set(['user_id']), targets: new Set<string>() };
  const create = (extra: Record<string, unknown>) =>
    validateTargetCreate(
      {
        name: 'shop-db',
        kind: 'sync_http',
        identifierTypes: ['user_id'],
        http: { urlTemplate: 'https://shop.example/{{user_id}}', ...extra },
      },
      ctx,
    );
  it('keeps them when given and leaves them out when not (older targets read back unchanged)', () => {
    const r = create({
      auth: { type: 'hmac_sha256', secretRef: 'SHOP_DB' },
      maxAttempts: 3,
      maxAgeSeconds: 600,
    });
    assert.ok(r.ok);
    assert.deepEqual(r.value.http!.auth, { type: 'hmac_sha256', secretRef: 'SHOP_DB' });
    assert.equal(r.value.http!.maxAttempts, 3);
    assert.equal(r.value.http!.maxAgeSeconds, 600);
    const plain = create({});
    assert.ok(plain.ok);
    assert.deepEqual(Object.keys(plain.value.http!).includes('auth'), false);
    assert.deepEqual(Object.keys(plain.value.http!).includes('maxAttempts'), false);
  });
  it('refuses bad values, every problem at once', () => {
    const r = create({
      auth: { type: 'digest', secretRef: 'lower-case', extra: 1 },
      maxAttempts: 0,
      maxAgeSeconds: 59,
    });
    assert.ok(!r.ok);
    assert.deepEqual(r.problems.map((p) => p.field).sort(), [
      'http.auth.extra',
      'http.auth.secretRef',
      'http.auth.type',
      'http.maxAgeSeconds',
      'http.maxAttempts',
    ]);
  });
  it('refuses bearer or basic next to a stored Authorization header', () => {
    const r = create({ auth: { type: 'bearer', secretRef: 'X' }, headers: { authorization: 'Bearer y' } });
    assert.ok(!r.ok);
    assert.equal(r.problems[0]!.field, 'http.auth');
    assert.ok(create({ auth: { type: 'hmac_sha256', secretRef: 'X' }, headers: { Authorization: 'y' } }).ok);
  });
  it('blocks link-local and metadata addresses at connect time, not loopback', () => {
    for (const ip of ['169.254.169.254', 'fe80::1', '::ffff:169.254.169.254', 'fd00:ec2::254', '0.0.0.0'])
      assert.equal(isBlockedAddress(ip), true, ip);
    for (const ip of ['127.0.0.1', '::1', '10.0.0.1', '93.184.216.34'])
      assert.equal(isBlockedAddress(ip), false, ip);
  });
});

describe('loadSyncDispatcherConfig', () => {
  it('has working defaults and reads secrets by reference', () => {
    const cfg = loadSyncDispatcherConfig({ ERASURE_SECRET_SHOP_DB: 'abc', PATH: '/bin' });
    assert.equal(cfg.secrets.get('SHOP_DB'), 'abc');
    assert.equal(cfg.secrets.size, 1);
    assert.equal(cfg.replicas, 1);
    assert.equal(cfg.defaults.maxAttempts, 15);
    assert.equal(cfg.defaults.maxAgeMs, 604_800_000);
    assert.equal(cfg.breaker.failureRatio, 0.5);
    assert.ok(Object.isFrozen(cfg));
    assert.notEqual(loadSyncDispatcherConfig({}).dispatcherId, cfg.dispatcherId, 'unique per process start');
  });
  it('reports every problem together, naming variables, never secret values', () => {
    try {
      loadSyncDispatcherConfig({
        SYNC_POLL_INTERVAL_MS: '0',
        SYNC_REPLICAS: 'two',
        SYNC_RETRY_INITIAL_MS: '5000',
        SYNC_RETRY_MAX_MS: '10',
        ERASURE_SECRET_bad: 'x',
        ERASURE_SECRET_CTRL: 'tab\there-is-the-secret',
      });
      assert.fail('expected a ConfigurationError');
    } catch (err) {
      assert.ok(err instanceof ConfigurationError);
      assert.equal(err.problems.length, 5, err.problems.join('\n'));
      assert.doesNotMatch(err.message, /here-is-the-secret/);
    }
  });
});
