// The HTTP edge against hostile or broken input, on the real API and PostgreSQL: what node's
// parser refuses, bodies that stall or stop, charsets and content codings, duplicate JSON
// keys, repeated Authorization headers, dates PostgreSQL stores as BC, invisible identifiers,
// list filters, a PostgreSQL that refuses us. Each answer is a 4xx (or 503) problem+json
// with a stable code, and nothing is written. Raw sockets where fetch cannot send the input.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startTestApi, type TestApi } from '../helpers/api.ts';

interface RawReply {
  status: number;
  headers: Map<string, string>;
  body: any;
  /** ms from the first byte sent until the server closed the connection (or we gave up). */
  closedAfterMs: number;
  closed: boolean;
}

/**
 * Sends `chunks` over one TCP connection (waiting `pauseMs` between them) and reads until the
 * server closes it or `waitMs` passes. `abortAfterMs`: destroy our side that long after the
 * last chunk instead of waiting for an answer.
 */
async function raw(
  url: string,
  chunks: (string | Buffer)[],
  opts: { waitMs?: number; pauseMs?: number; abortAfterMs?: number } = {},
): Promise<RawReply> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const started = Date.now();
  const received: Buffer[] = [];
  socket.on('data', (d: Buffer) => received.push(d));
  socket.on('error', () => undefined); // a reset after the answer is part of some cases
  const closed = new Promise<boolean>((resolve) => {
    socket.once('close', () => resolve(true));
    setTimeout(() => resolve(false), opts.waitMs ?? 5000).unref();
  });
  for (const [i, c] of chunks.entries()) {
    if (i > 0) await new Promise((r) => setTimeout(r, opts.pauseMs ?? 0));
    socket.write(c);
  }
  if (opts.abortAfterMs !== undefined) {
    await new Promise((r) => setTimeout(r, opts.abortAfterMs));
    socket.destroy();
  }
  const didClose = await closed;
  const closedAfterMs = Date.now() - started;
  socket.destroy();
  const text = Buffer.concat(received).toString('utf8');
  const split = text.indexOf('\r\n\r\n');
  const head = split === -1 ? text : text.slice(0, split);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = new Map(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  let body: unknown = split === -1 ? undefined : text.slice(split + 4);
  try {
    body = JSON.parse(body as string);
  } catch {
    /* not JSON */
  }
  return { status: Number(statusLine.split(' ')[1] ?? 0), headers, body, closedAfterMs, closed: didClose };
}

function assertProblem(
  res: { status: number; body: any; headers: { get(name: string): string | null | undefined } },
  status: number,
  code: string,
): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  assert.equal(res.body?.code, code, JSON.stringify(res.body));
  assert.equal(res.body.status, status);
  assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
  assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
}

const gdpr = (value: string, extra: Record<string, unknown> = {}) => ({
  identifiers: [{ type: 'user_id', value }],
  reason: 'gdpr_art17',
  ...extra,
});

describe('HTTP edge', () => {
  let api: TestApi;
  const submit = (key: string, raw: string | Buffer, headers: Record<string, string> = {}) =>
    api.call('POST', '/v1/erasure-requests', {
      raw,
      headers: { 'content-type': 'application/json', 'idempotency-key': key, ...headers },
    });
  const rows = async (table = 'erasure_requests') =>
    (await api.db.pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number;
  const head = (method: string, path: string, extra = '') =>
    `${method} ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${api.adminToken}\r\n${extra}`;

  before(async () => {
    // Short bounds so that stalled requests are cut within seconds here.
    api = await startTestApi({ HTTP_HEADERS_TIMEOUT_MS: '1000', HTTP_REQUEST_TIMEOUT_MS: '2000' });
    const target = await api.call('POST', '/v1/targets', {
      body: { name: 'orders', kind: 'async_event', identifierTypes: ['user_id', 'email'] },
    });
    assert.equal(target.status, 201);
  });
  after(async () => api.stop());

  describe('notBefore', () => {
    for (const notBefore of ['0000-01-01T00:00:00Z', '0001-01-01T00:00:00+01:00', '1969-12-31T23:59:59Z']) {
      it(`refuses ${notBefore} (before 1970; year 0 or BC in UTC cannot be published)`, async () => {
        const before = await rows('outbox');
        const res = await submit(`nb-${notBefore}`, JSON.stringify(gdpr(`nb-${notBefore}`, { notBefore })));
        assertProblem(res, 400, 'ERR_VALIDATION');
        assert.equal(res.body.field, 'notBefore');
        assert.equal(await rows('outbox'), before);
      });
    }

    it('still accepts 1970-01-01T00:00:00Z and a time in the past', async () => {
      for (const notBefore of ['1970-01-01T00:00:00Z', '2001-02-03T04:05:06+01:00']) {
        const res = await submit(
          `nb-ok-${notBefore}`,
          JSON.stringify(gdpr(`nb-ok-${notBefore}`, { notBefore })),
        );
        assert.equal(res.status, 202, JSON.stringify(res.body));
      }
    });
  });

  describe('charset and content coding', () => {
    it('refuses a charset other than UTF-8 rather than reading the bytes as UTF-8', async () => {
      const latin1 = Buffer.from(JSON.stringify(gdpr('café-latin1')), 'utf8'); // "cafÃ©" to a latin1 reader
      const before = await rows();
      for (const [i, type] of [
        'application/json; charset=latin1',
        'application/json;charset=ISO-8859-1',
        'application/json; charset="utf-16"',
        'application/json; charset=utf-8; charset=latin1',
      ].entries()) {
        const res = await submit(`cs-${i}`, latin1, { 'content-type': type });
        assertProblem(res, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE');
      }
      assert.equal(await rows(), before);
    });

    it('accepts charset=utf-8 in any case, quoted or not', async () => {
      for (const [i, type] of [
        'application/json; charset=utf-8',
        'application/json;charset=UTF-8',
        'application/json; charset="Utf-8"',
        'application/json ; Charset=utf8',
      ].entries()) {
        const res = await submit(`cs-ok-${i}`, JSON.stringify(gdpr(`cs-ok-${i}`)), { 'content-type': type });
        assert.equal(res.status, 202, `${type}: ${JSON.stringify(res.body)}`);
      }
    });

    it('refuses a compressed body (415 with Accept-Encoding: identity), accepts identity', async () => {
      const before = await rows();
      for (const [i, coding] of ['gzip', 'br', 'deflate', 'identity, gzip'].entries()) {
        const res = await submit(`ce-${i}`, JSON.stringify(gdpr(`ce-${i}`)), { 'content-encoding': coding });
        assertProblem(res, 415, 'ERR_UNSUPPORTED_MEDIA_TYPE');
        assert.equal(res.headers.get('accept-encoding'), 'identity');
      }
      assert.equal(await rows(), before);
      const ok = await submit('ce-identity', JSON.stringify(gdpr('ce-identity')), {
        'content-encoding': 'identity',
      });
      assert.equal(ok.status, 202, JSON.stringify(ok.body));
    });
  });

  describe('duplicate JSON keys', () => {
    const valid = JSON.stringify(gdpr('dup')).slice(1, -1);
    for (const [i, [what, body]] of [
      ['at the top', `{${valid},"reason":"tester_cleanup"}`],
      ['spelt with an escape', `{${valid},"re\\u0061son":"tester_cleanup"}`],
      ['with whitespace before the colon', `{${valid}, "reason" : "ccpa"}`],
      [
        'in a nested object',
        '{"identifiers":[{"type":"user_id","value":"a","type":"email"}],"reason":"gdpr_art17"}',
      ],
      ['"__proto__" twice', `{${valid},"__proto__":1,"__proto__":2}`],
    ].entries()) {
      it(`refuses a key given twice ${what}`, async () => {
        const before = await rows();
        const res = await submit(`dup-${i}`, body!);
        assertProblem(res, 400, 'ERR_DUPLICATE_KEY');
        assert.equal(await rows(), before);
      });
    }

    it('refuses them in a batch item and in the other JSON bodies', async () => {
      const batch = await api.call('POST', '/v1/erasure-requests:batch', {
        raw: `{"requests":[{"idempotencyKey":"b1",${valid},"reason":"ccpa"}]}`,
        headers: { 'content-type': 'application/json' },
      });
      assertProblem(batch, 400, 'ERR_DUPLICATE_KEY');
      const target = await api.call('POST', '/v1/targets', {
        raw: '{"name":"dup-a","kind":"async_event","identifierTypes":["user_id"],"name":"dup-b"}',
        headers: { 'content-type': 'application/json' },
      });
      assertProblem(target, 400, 'ERR_DUPLICATE_KEY');
    });

    it('accepts one key in several objects, and `":` inside strings', async () => {
      const body = JSON.stringify({
        identifiers: [
          { type: 'user_id', value: 'x\\":y' },
          { type: 'email', value: 'dup-ok@example.com' },
        ],
        reason: 'gdpr_art17',
      });
      const res = await submit('dup-ok', body);
      assert.equal(res.status, 202, JSON.stringify(res.body));
    });
  });

  it('refuses two Authorization headers, whichever token each carries', async () => {
    const reader = await api.token(['read']);
    const before = await rows();
    const body = JSON.stringify(gdpr('two-auth'));
    const res = await raw(api.url, [
      head('POST', '/v1/erasure-requests', `Authorization: Bearer ${reader}\r\n`) +
        `Idempotency-Key: two-auth\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n` +
        `Connection: close\r\n\r\n${body}`,
    ]);
    assertProblem(res, 400, 'ERR_VALIDATION');
    assert.equal(res.body.field, 'Authorization');
    assert.equal(await rows(), before);
    assert.equal(
      (await api.call('GET', '/v1/erasure-requests?limit=1')).status,
      200,
      'one header still works',
    );
  });

  it('treats an identifier made only of invisible characters as empty', async () => {
    const before = await rows();
    for (const value of ['\u200b', '\u200b\u2060\ufeff', ' \u00ad ', '\u{E0020}']) {
      const res = await submit(
        `zw-${[...value].length}-${value.codePointAt(0)}`,
        JSON.stringify(gdpr(value)),
      );
      assertProblem(res, 400, 'ERR_INVALID_IDENTIFIER');
      assert.match(res.body.detail, /is empty/);
    }
    assert.equal(await rows(), before);
  });

  describe('list filters', () => {
    it('reads limit as decimal digits only', async () => {
      for (const limit of ['0x10', '1e2', '5.0', '+5', '%205', '']) {
        const res = await api.call('GET', `/v1/erasure-requests?limit=${limit}`);
        assertProblem(res, 400, 'ERR_VALIDATION');
        assert.equal(res.body.field, 'limit', limit);
      }
      assert.equal((await api.call('GET', '/v1/erasure-requests?limit=16')).status, 200);
    });

    it('refuses an empty filter rather than ignoring it', async () => {
      for (const name of ['status', 'reason', 'target', 'overdue', 'cursor']) {
        const res = await api.call('GET', `/v1/erasure-requests?${name}=`);
        assertProblem(res, 400, 'ERR_VALIDATION');
        assert.equal(res.body.field, name);
      }
    });
  });

  it('refuses a target rate below 0.01 calls a second', async () => {
    const http = { urlTemplate: 'https://partner.example/users/{{user_id}}' };
    for (const rateLimitPerSecond of [1e-300, 0.009]) {
      const res = await api.call('POST', '/v1/targets', {
        body: {
          name: 'slowpoke',
          kind: 'sync_http',
          identifierTypes: ['user_id'],
          http: { ...http, rateLimitPerSecond },
        },
      });
      assertProblem(res, 400, 'ERR_VALIDATION');
      assert.equal(res.body.field, 'http.rateLimitPerSecond');
    }
    const ok = await api.call('POST', '/v1/targets', {
      body: {
        name: 'slowpoke',
        kind: 'sync_http',
        identifierTypes: ['user_id'],
        http: { ...http, rateLimitPerSecond: 0.01 },
      },
    });
    assert.equal(ok.status, 201, JSON.stringify(ok.body));
  });

  it('routes the batch path as leniently as the single one (case, one trailing slash)', async () => {
    for (const [i, path] of [
      '/v1/erasure-requests:BATCH',
      '/V1/Erasure-Requests:batch/',
      '/v1/erasure-requests/',
    ].entries()) {
      const body = path.includes(':')
        ? { requests: [{ ...gdpr(`route-${i}`), idempotencyKey: `route-${i}` }] }
        : gdpr(`route-${i}`);
      const res = await api.call('POST', path, { body, headers: { 'idempotency-key': `route-${i}` } });
      assert.equal(res.status, path.includes(':') ? 200 : 202, `${path}: ${JSON.stringify(res.body)}`);
    }
    const twoSlashes = await api.call('POST', '/v1/erasure-requests:batch//', { body: { requests: [] } });
    assert.equal(twoSlashes.status, 404);
    assert.equal(twoSlashes.body.code, 'ERR_NOT_FOUND');
  });

  it('sends X-Content-Type-Options: nosniff on every answer', async () => {
    for (const [path, token] of [
      ['/healthz', undefined],
      ['/v1/erasure-requests?limit=1', undefined],
      ['/v1/erasure-requests', null],
      ['/nowhere', undefined],
    ] as const) {
      const res = await api.call('GET', path, { token });
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', path);
    }
  });

  describe("node's HTTP parser", () => {
    const cases: [string, () => string, number, string][] = [
      [
        'headers over the limit',
        () => `${head('GET', '/v1/erasure-requests')}Idempotency-Key: ${'k'.repeat(20_000)}\r\n\r\n`,
        431,
        'ERR_HEADERS_TOO_LARGE',
      ],
      [
        'a control byte in a header value',
        () => `${head('GET', '/v1/targets')}X-A: a\x01b\r\n\r\n`,
        400,
        'ERR_MALFORMED_HTTP',
      ],
      [
        'Content-Length with Transfer-Encoding',
        () =>
          `${head('POST', '/v1/tokens')}Content-Type: application/json\r\nContent-Length: 2\r\n` +
          'Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
        400,
        'ERR_MALFORMED_HTTP',
      ],
      ['an unknown method', () => 'FROB /v1/targets HTTP/1.1\r\nHost: x\r\n\r\n', 400, 'ERR_MALFORMED_HTTP'],
      ['a garbage request line', () => '\x16\x03\x01 hello\r\n\r\n', 400, 'ERR_MALFORMED_HTTP'],
    ];
    for (const [what, bytes, status, code] of cases) {
      it(`answers ${what} with problem+json ${status} ${code}`, async () => {
        const res = await raw(api.url, [bytes()]);
        assert.equal(res.status, status, JSON.stringify(res.body));
        assert.equal(res.body?.code, code, JSON.stringify(res.body));
        assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
        assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
        assert.equal(res.headers.get('content-length'), String(Buffer.byteLength(JSON.stringify(res.body))));
        assert.ok(res.closed, 'the connection is closed');
      });
    }

    it('answers a chunked body over the limit (no Content-Length) with 413 problem+json, and writes nothing', async () => {
      const before = await rows();
      const chunk = Buffer.alloc(70_000, 'x');
      const size = chunk.length.toString(16);
      for (const path of ['/v1/erasure-requests', '/v1/targets']) {
        const res = await raw(
          api.url,
          [
            `${head('POST', path)}Content-Type: application/json\r\nIdempotency-Key: chunked-over\r\n` +
              'Transfer-Encoding: chunked\r\n\r\n',
            ...Array.from({ length: 20 }, () =>
              Buffer.concat([Buffer.from(`${size}\r\n`), chunk, Buffer.from('\r\n')]),
            ),
            '0\r\n\r\n',
          ],
          { waitMs: 2000 },
        );
        assertProblem(
          { ...res, headers: { get: (n: string) => res.headers.get(n) } },
          413,
          'ERR_BODY_TOO_LARGE',
        );
      }
      assert.equal(await rows(), before);
      assert.equal(api.logs().includes('ERR_INTERNAL'), false);
    });

    it('answers an unknown Expect with problem+json 417 ERR_EXPECTATION_FAILED', async () => {
      const res = await raw(api.url, [
        `${head('GET', '/v1/targets')}Expect: teapot\r\nConnection: close\r\n\r\n`,
      ]);
      assert.equal(res.status, 417);
      assert.equal(res.body?.code, 'ERR_EXPECTATION_FAILED');
      assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    });
  });

  describe('slow and vanishing clients', () => {
    it('cuts headers that never end: 408 problem+json within the headers bound', async () => {
      const res = await raw(api.url, ['GET /v1/targets HTTP/1.1\r\nHost: x\r\n'], { waitMs: 8000 });
      assert.ok(res.closed, 'the connection is closed');
      assert.ok(res.closedAfterMs < 4000, `closed after ${res.closedAfterMs} ms`);
      assert.equal(res.status, 408);
      assert.equal(res.body?.code, 'ERR_REQUEST_TIMEOUT');
    });

    it('cuts a body that stops coming: 408 within the request bound, nothing written, no internal error', async () => {
      const before = await rows();
      const res = await raw(
        api.url,
        [
          head('POST', '/v1/erasure-requests') +
            'Idempotency-Key: stalled\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"identi',
        ],
        { waitMs: 8000 },
      );
      assert.ok(res.closed, 'the connection is closed');
      assert.ok(res.closedAfterMs < 5000, `closed after ${res.closedAfterMs} ms`);
      assert.equal(res.status, 408);
      assert.equal(res.body?.code, 'ERR_REQUEST_TIMEOUT');
      assert.equal(await rows(), before);
      await new Promise((r) => setTimeout(r, 200));
      assert.doesNotMatch(api.logs(), /ERR_INTERNAL/);
    });

    it('logs a client that leaves mid-body as ERR_CLIENT_ABORTED at debug, not as an internal error', async () => {
      const before = await rows();
      const aborted = () =>
        api
          .logs()
          .split('\n')
          .filter((l) => l.includes('ERR_CLIENT_ABORTED'));
      const logged = aborted().length;
      for (const path of ['/v1/erasure-requests:batch', '/v1/targets', '/v1/tokens']) {
        const res = await raw(
          api.url,
          [
            head('POST', path) +
              'Idempotency-Key: abort\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"requests":',
          ],
          { abortAfterMs: 200 },
        );
        assert.equal(res.status, 0, 'nothing was answered');
      }
      // Each line is written once the API has noticed its abort, which on a loaded machine
      // can trail the abort well past a fixed pause: wait for all three, up to a deadline.
      const deadline = Date.now() + 5000;
      while (aborted().length - logged < 3 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 50));
      const lines = aborted().slice(logged);
      assert.equal(lines.length, 3, api.logs().slice(-2000));
      for (const l of lines) assert.equal(JSON.parse(l).level, 'debug');
      assert.doesNotMatch(api.logs(), /ERR_INTERNAL|"level":"error"/);
      assert.equal(await rows(), before);
    });
  });

  describe('OpenAPI document', () => {
    const doc = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', '..', 'schemas', 'openapi.json'), 'utf8'),
    );
    const ops: [string, string, string][] = [
      ['GET', '/v1/erasure-requests/{id}', '/v1/erasure-requests/%E0%A4%A'],
      ['POST', '/v1/erasure-requests/{id}/cancel', '/v1/erasure-requests/%E0%A4%A/cancel'],
      ['GET', '/v1/targets/{name}', '/v1/targets/%E0%A4%A'],
    ];
    it('documents the 400 these operations answer for bad percent-encoding', async () => {
      for (const [method, template, path] of ops) {
        const res = await api.call(method, path);
        assertProblem(res, 400, 'ERR_VALIDATION');
        const documented = doc.paths[template][method.toLowerCase()].responses['400'];
        assert.ok(documented, `${method} ${template} documents 400`);
        assert.match(
          documented.description ?? doc.components.responses[documented.$ref?.split('/').at(-1)]?.description,
          /ERR_VALIDATION/,
        );
      }
    });

    it('documents the 400 every authenticated GET and the cancel answer for %00 in the URL', async () => {
      for (const [method, template, path] of [
        ...ops.map(([m, t]) => [m, t, t.replace(/\{[^}]+\}/, 'x%00')] as [string, string, string]),
        ['GET', '/v1/targets', '/v1/targets?x=%00'],
        ['GET', '/v1/identifier-types', '/v1/identifier-types?x=%1f'],
      ] as [string, string, string][]) {
        const res = await api.call(method, path);
        assertProblem(res, 400, 'ERR_CONTROL_CHARACTERS');
        const documented = doc.paths[template][method.toLowerCase()].responses['400'];
        assert.ok(documented, `${method} ${template} documents 400`);
        const text =
          documented.description ?? doc.components.responses[documented.$ref?.split('/').at(-1)]?.description;
        assert.match(text, /ERR_CONTROL_CHARACTERS/, `${method} ${template}`);
      }
    });
  });
});

describe('HTTP edge: a PostgreSQL that refuses the API', () => {
  for (const [what, sqlstate, url] of [
    ['a wrong password', '28P01', 'postgres://erasure:not-the-password@127.0.0.1:5432/erasure'],
    ['an unknown database', '3D000', 'postgres://erasure:erasure@127.0.0.1:5432/no_such_database_here'],
  ]) {
    it(`answers ${what} (${sqlstate}) 503 with Retry-After, like a refused connection`, async () => {
      const db = new URL(process.env['DATABASE_URL'] ?? 'postgres://erasure:erasure@127.0.0.1:5432/erasure');
      const bad = new URL(url!);
      bad.hostname = db.hostname;
      bad.port = db.port;
      bad.username = db.username;
      if (sqlstate === '3D000') bad.password = db.password;
      const broken = await startTestApi({ DATABASE_URL: bad.toString(), ERASURE_ADMIN_TOKEN: '' });
      try {
        const res = await broken.call('GET', '/v1/erasure-requests', {
          token: 'ert_aaaaaaaaaaaaaaaaaaaaaaaa',
        });
        assertProblem(res, 503, 'ERR_UNAVAILABLE');
        assert.equal(res.headers.get('retry-after'), '1');
        assert.match(broken.logs(), new RegExp(`"code":"${sqlstate}"`));
        assert.doesNotMatch(broken.logs(), /ERR_INTERNAL/);
      } finally {
        await broken.stop();
      }
    });
  }
});
