// Target registry validation: shape, defaults, templates, the partner URL policy and patches.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  checkPartnerUrl,
  renderTemplate,
  validateTargetCreate,
  validateTargetPatch,
  type FieldProblem,
  type TargetInput,
  type TargetResult,
} from '../../services/shared/validate-target.ts';

const ctx = {
  identifierTypes: new Set(['user_id', 'email', 'phone', 'device_id']),
  targets: new Set(['crm', 'billing', 'warehouse']),
};

function syncBody(http: Record<string, unknown> = {}, rest: Record<string, unknown> = {}) {
  return {
    name: 'shop-db',
    kind: 'sync_http',
    identifierTypes: ['user_id', 'email'],
    http: { urlTemplate: 'https://shop.example/users/{{user_id}}?email={{email}}', ...http },
    ...rest,
  };
}

function asyncBody(rest: Record<string, unknown> = {}) {
  return { name: 'events', kind: 'async_event', identifierTypes: ['user_id'], ...rest };
}

function valueOf(r: TargetResult): TargetInput {
  assert.ok(r.ok, `expected success, got ${JSON.stringify(r.ok ? null : r.problems)}`);
  return r.value;
}

function problemsOf(r: TargetResult): FieldProblem[] {
  assert.equal(r.ok, false, 'expected problems');
  return r.ok ? [] : r.problems;
}

/** "CODE field" for each problem, to compare as a set. */
function found(r: TargetResult): string[] {
  return problemsOf(r).map((p) => `${p.code} ${p.field}`);
}

function assertOne(r: TargetResult, code: FieldProblem['code'], field: string): FieldProblem {
  const problems = problemsOf(r);
  assert.deepEqual(found(r), [`${code} ${field}`]);
  return problems[0]!;
}

const create = (body: unknown) => validateTargetCreate(body, ctx);
const withHttp = (http: Record<string, unknown>) => create(syncBody(http));

describe('validateTargetCreate: valid targets and defaults', () => {
  it('accepts a sync_http target and fills every default', () => {
    assert.deepEqual(valueOf(create(syncBody())), {
      name: 'shop-db',
      kind: 'sync_http',
      identifierTypes: ['user_id', 'email'],
      ackSlaSeconds: 86_400,
      after: [],
      http: {
        method: 'DELETE',
        urlTemplate: 'https://shop.example/users/{{user_id}}?email={{email}}',
        headers: {},
        bodyTemplate: null,
        timeoutMs: 10_000,
        rateLimitPerSecond: 50,
        concurrency: 4,
        notFoundStatuses: [404],
      },
      verifyUrlTemplate: null,
      paused: false,
      owner: null,
    });
  });

  it('keeps every field given explicitly', () => {
    const http = {
      method: 'POST',
      urlTemplate: 'http://127.0.0.1:9090/erase',
      headers: { Authorization: 'Bearer abc', 'X-Request-Source': 'erasure' },
      bodyTemplate: '{"userId":"{{user_id}}","email":"{{email}}"}',
      timeoutMs: 120_000,
      rateLimitPerSecond: 0.5,
      concurrency: 256,
      notFoundStatuses: [404, 410],
    };
    const rest = {
      ackSlaSeconds: 2_592_000,
      after: ['crm', 'billing'],
      verifyUrlTemplate: 'https://shop.example/users/{{user_id}}',
      paused: true,
      owner: 'team-shop@example.com',
    };
    assert.deepEqual(valueOf(create(syncBody(http, rest))), { ...syncBody(http, rest), http });
  });

  it('accepts an async_event target without http', () => {
    assert.deepEqual(valueOf(create(asyncBody({ after: ['crm'] }))), {
      name: 'events',
      kind: 'async_event',
      identifierTypes: ['user_id'],
      ackSlaSeconds: 86_400,
      after: ['crm'],
      http: null,
      verifyUrlTemplate: null,
      paused: false,
      owner: null,
    });
  });

  it('treats null optional fields as absent', () => {
    const body = asyncBody({
      ackSlaSeconds: null,
      after: null,
      paused: null,
      owner: null,
      verifyUrlTemplate: null,
    });
    assert.deepEqual(valueOf(create(body)), valueOf(create(asyncBody())));
    const http = { method: null, headers: null, bodyTemplate: null, timeoutMs: null, notFoundStatuses: null };
    assert.deepEqual(valueOf(withHttp(http)), valueOf(create(syncBody())));
  });

  it('accepts the range limits', () => {
    valueOf(create(asyncBody({ ackSlaSeconds: 1, owner: 'o'.repeat(200) })));
    valueOf(withHttp({ timeoutMs: 100, concurrency: 1, rateLimitPerSecond: 100_000, notFoundStatuses: [] }));
    valueOf(withHttp({ rateLimitPerSecond: 0.01 }));
    valueOf(withHttp({ notFoundStatuses: [400, 499] }));
    valueOf(create(asyncBody({ name: 'ab' })));
    valueOf(create(asyncBody({ name: `a${'b'.repeat(62)}` })));
    valueOf(create(asyncBody({ name: 'a.b_c-9' })));
  });
});

describe('validateTargetCreate: shape', () => {
  it('requires a plain JSON object', () => {
    for (const body of [null, undefined, [], 'x', 42, new Date(), new Map()]) {
      assert.deepEqual(found(create(body)), ['ERR_VALIDATION ']);
    }
    valueOf(create(Object.assign(Object.create(null) as object, asyncBody())));
  });

  it('names unknown top-level and http fields', () => {
    const r = create(syncBody({ retries: 3 }, { color: 'blue', Name: 'x' }));
    assert.deepEqual(found(r).sort(), [
      'ERR_UNKNOWN_FIELD Name',
      'ERR_UNKNOWN_FIELD color',
      'ERR_UNKNOWN_FIELD http.retries',
    ]);
  });

  it('treats "__proto__" from JSON.parse as an unknown field, not a prototype', () => {
    const body: unknown = JSON.parse(
      '{"name":"events","kind":"async_event","identifierTypes":["user_id"],"__proto__":{"x":1}}',
    );
    assertOne(create(body), 'ERR_UNKNOWN_FIELD', '__proto__');
    assert.equal(({} as Record<string, unknown>).x, undefined);
  });

  it('escapes control characters in an unknown field name it repeats', () => {
    const p = assertOne(create(asyncBody({ 'a\nb': 1 })), 'ERR_UNKNOWN_FIELD', 'a\\u000ab');
    assert.ok(!p.message.includes('\n'));
  });

  it('collects every problem, not just the first', () => {
    const r = create({
      name: 'X',
      kind: 'sync',
      identifierTypes: [],
      ackSlaSeconds: 0,
      paused: 'yes',
      extra: 1,
    });
    assert.deepEqual(found(r).sort(), [
      'ERR_UNKNOWN_FIELD extra',
      'ERR_VALIDATION ackSlaSeconds',
      'ERR_VALIDATION identifierTypes',
      'ERR_VALIDATION kind',
      'ERR_VALIDATION name',
      'ERR_VALIDATION paused',
    ]);
  });
});

describe('validateTargetCreate: fields', () => {
  it('checks name', () => {
    for (const name of ['A-b', 'a', '1abc', '-ab', 'ab c', 'ab/c', `a${'b'.repeat(63)}`, 42, '']) {
      assertOne(create(asyncBody({ name })), 'ERR_VALIDATION', 'name');
    }
    assert.match(
      assertOne(create(asyncBody({ name: undefined })), 'ERR_VALIDATION', 'name').message,
      /required/,
    );
  });

  it('checks kind', () => {
    for (const kind of ['sync', 'SYNC_HTTP', 1, undefined]) {
      assertOne(create(asyncBody({ kind })), 'ERR_VALIDATION', 'kind');
    }
  });

  it('checks identifierTypes and names the unknown type', () => {
    for (const identifierTypes of [undefined, [], 'user_id', {}]) {
      assertOne(create(asyncBody({ identifierTypes })), 'ERR_VALIDATION', 'identifierTypes');
    }
    const p = assertOne(
      create(asyncBody({ identifierTypes: ['user_id', 'ssn'] })),
      'ERR_VALIDATION',
      'identifierTypes[1]',
    );
    assert.match(p.message, /"ssn"/);
    assertOne(
      create(asyncBody({ identifierTypes: ['email', 'email'] })),
      'ERR_VALIDATION',
      'identifierTypes[1]',
    );
    assertOne(create(asyncBody({ identifierTypes: ['email', 7] })), 'ERR_VALIDATION', 'identifierTypes[1]');
  });

  it('checks ackSlaSeconds', () => {
    for (const ackSlaSeconds of [0, -1, 2_592_001, 1.5, '60', true]) {
      assertOne(create(asyncBody({ ackSlaSeconds })), 'ERR_VALIDATION', 'ackSlaSeconds');
    }
  });

  it('checks after: known targets, not itself, no repeats', () => {
    assert.match(
      assertOne(create(asyncBody({ after: ['crm', 'nope'] })), 'ERR_VALIDATION', 'after[1]').message,
      /"nope"/,
    );
    const self = validateTargetCreate(asyncBody({ name: 'crm', after: ['crm'] }), ctx);
    assert.match(assertOne(self, 'ERR_VALIDATION', 'after[0]').message, /itself/);
    assertOne(create(asyncBody({ after: ['crm', 'crm'] })), 'ERR_VALIDATION', 'after[1]');
    assertOne(create(asyncBody({ after: 'crm' })), 'ERR_VALIDATION', 'after');
  });

  it('checks paused and owner', () => {
    assertOne(create(asyncBody({ paused: 'true' })), 'ERR_VALIDATION', 'paused');
    assertOne(create(asyncBody({ owner: 'o'.repeat(201) })), 'ERR_VALIDATION', 'owner');
    assertOne(create(asyncBody({ owner: 5 })), 'ERR_VALIDATION', 'owner');
  });

  it('requires http for sync_http and refuses it for async_event', () => {
    assertOne(create({ ...syncBody(), http: undefined }), 'ERR_VALIDATION', 'http');
    assertOne(create({ ...syncBody(), http: null }), 'ERR_VALIDATION', 'http');
    assertOne(create(asyncBody({ http: { urlTemplate: 'https://x.example/' } })), 'ERR_VALIDATION', 'http');
    assertOne(create({ ...syncBody(), http: 'https://x.example/' }), 'ERR_VALIDATION', 'http');
    assertOne(withHttp({ urlTemplate: undefined }), 'ERR_VALIDATION', 'http.urlTemplate');
  });

  it('checks the http numbers and method', () => {
    const bad: [string, unknown][] = [
      ['method', 'GET'],
      ['method', 'delete'],
      ['timeoutMs', 99],
      ['timeoutMs', 120_001],
      ['timeoutMs', 500.5],
      ['rateLimitPerSecond', 0],
      ['rateLimitPerSecond', -1],
      ['rateLimitPerSecond', 100_001],
      ['rateLimitPerSecond', 1e-300], // a wait of 1e303 s between calls
      ['rateLimitPerSecond', 0.009],
      ['rateLimitPerSecond', '5'],
      ['concurrency', 0],
      ['concurrency', 257],
      ['concurrency', 2.5],
      ['notFoundStatuses', [399]],
      ['notFoundStatuses', [500]],
      ['notFoundStatuses', [404.5]],
      ['notFoundStatuses', 404],
      ['notFoundStatuses', ['404']],
    ];
    for (const [key, v] of bad) assertOne(withHttp({ [key]: v }), 'ERR_VALIDATION', `http.${key}`);
    for (const method of ['DELETE', 'POST', 'PUT', 'PATCH'])
      assert.equal(valueOf(withHttp({ method })).http?.method, method);
  });
});

describe('validateTargetCreate: headers', () => {
  it('accepts token names and plain values', () => {
    const headers = { "X-Api-Key!#$%&'*+.^_`|~": 'v', Authorization: 'Bearer a.b-c', Accept: '' };
    assert.deepEqual(valueOf(withHttp({ headers })).http?.headers, headers);
  });

  it('refuses names that are not tokens', () => {
    for (const name of ['X Key', 'X:Key', 'X-Ké', '', '(x)']) {
      assertOne(withHttp({ headers: { [name]: 'v' } }), 'ERR_VALIDATION', `http.headers.${name}`);
    }
  });

  it('refuses headers the HTTP client sets itself, in any case', () => {
    for (const name of ['Host', 'content-length', 'Transfer-Encoding', 'CONNECTION']) {
      assertOne(withHttp({ headers: { [name]: 'v' } }), 'ERR_VALIDATION', `http.headers.${name}`);
    }
  });

  it('refuses one header given twice in different cases', () => {
    assertOne(withHttp({ headers: { 'X-Key': 'a', 'x-key': 'b' } }), 'ERR_VALIDATION', 'http.headers.x-key');
  });

  it('allows at most 50 headers', () => {
    const headers = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`X-H${i}`, 'v']));
    valueOf(withHttp({ headers: headers(50) }));
    assertOne(withHttp({ headers: headers(51) }), 'ERR_VALIDATION', 'http.headers');
  });

  it('refuses non-object headers and non-string values', () => {
    assertOne(withHttp({ headers: [['X-Key', 'v']] }), 'ERR_VALIDATION', 'http.headers');
    assertOne(withHttp({ headers: { 'X-Key': 5 } }), 'ERR_VALIDATION', 'http.headers.X-Key');
    assertOne(withHttp({ headers: { 'X-Key': null } }), 'ERR_VALIDATION', 'http.headers.X-Key');
  });

  it('refuses control characters and non-Latin-1 in values without repeating the value', () => {
    const secret = 'sk_live_do_not_log';
    for (const value of [
      `${secret}\r\nX-Evil: 1`,
      `${secret}\n`,
      `${secret}\u0000`,
      `${secret}\t`,
      `${secret}\u007f`,
    ]) {
      const p = assertOne(
        withHttp({ headers: { Authorization: value } }),
        'ERR_CONTROL_CHARACTERS',
        'http.headers.Authorization',
      );
      assert.ok(!p.message.includes(secret));
    }
    const p = assertOne(
      withHttp({ headers: { Authorization: `${secret}€` } }),
      'ERR_VALIDATION',
      'http.headers.Authorization',
    );
    assert.ok(!p.message.includes(secret));
    const r = withHttp({
      headers: { 'X Bad': secret, Host: secret, 'X-Ok': 5, 'X-Dup': secret, 'x-dup': secret },
    });
    assert.ok(!JSON.stringify(problemsOf(r)).includes(secret));
  });

  it('refuses control characters in names, escaped in the field', () => {
    assertOne(
      withHttp({ headers: { 'X-Key\r\nEvil': 'v' } }),
      'ERR_CONTROL_CHARACTERS',
      'http.headers.X-Key\\u000d\\u000aEvil',
    );
  });
});

describe('validateTargetCreate: templates', () => {
  it('refuses a placeholder for a type the target does not declare', () => {
    const url = 'https://shop.example/users/{{phone}}';
    const p = assertOne(withHttp({ urlTemplate: url }), 'ERR_INVALID_TARGET', 'http.urlTemplate');
    assert.match(p.message, /\{\{phone\}\}/);
    assertOne(
      withHttp({ urlTemplate: 'https://shop.example/{{ssn}}' }),
      'ERR_INVALID_TARGET',
      'http.urlTemplate',
    );
    const body = '{"phone":"{{phone}}"}';
    assertOne(withHttp({ bodyTemplate: body }), 'ERR_INVALID_TARGET', 'http.bodyTemplate');
    const verify = create(syncBody({}, { verifyUrlTemplate: 'https://shop.example/{{device_id}}' }));
    assertOne(verify, 'ERR_INVALID_TARGET', 'verifyUrlTemplate');
  });

  it('refuses a "{{" that is not a placeholder', () => {
    for (const bad of ['{{user_id}', '{{ user_id }}', '{{}}', '{{{user_id}}}', '{{user-id}}', '{{', 'a{{b']) {
      assertOne(
        withHttp({ urlTemplate: `https://shop.example/u/${bad}` }),
        'ERR_INVALID_TARGET',
        'http.urlTemplate',
      );
      assertOne(withHttp({ bodyTemplate: `{"id":"${bad}"}` }), 'ERR_INVALID_TARGET', 'http.bodyTemplate');
    }
  });

  it('allows placeholders anywhere after the host, and repeated', () => {
    const urlTemplate = 'https://shop.example:8443/u/{{user_id}}/{{user_id}}?e={{email}}#{{email}}';
    valueOf(withHttp({ urlTemplate }));
  });

  it('refuses a placeholder in the host, port or user info', () => {
    for (const urlTemplate of [
      'https://{{user_id}}.shop.example/x',
      'https://shop{{user_id}}.example/x',
      'https://{{user_id}}/x',
      'https://shop.example:{{user_id}}/x',
      'https://{{user_id}}@shop.example/x',
      'http:\\\\{{user_id}}\\x',
      'http:{{user_id}}/x',
      'https:///{{user_id}}/x',
    ]) {
      const p = assertOne(withHttp({ urlTemplate }), 'ERR_INVALID_TARGET', 'http.urlTemplate');
      assert.match(p.message, /host/, urlTemplate);
    }
    const verify = create(syncBody({}, { verifyUrlTemplate: 'https://{{user_id}}.shop.example/' }));
    assertOne(verify, 'ERR_INVALID_TARGET', 'verifyUrlTemplate');
  });

  it('applies the partner URL rules to both URL templates', () => {
    assertOne(
      withHttp({ urlTemplate: 'http://169.254.169.254/{{user_id}}' }),
      'ERR_INVALID_TARGET',
      'http.urlTemplate',
    );
    assertOne(
      withHttp({ urlTemplate: 'ftp://shop.example/{{user_id}}' }),
      'ERR_INVALID_TARGET',
      'http.urlTemplate',
    );
    assertOne(withHttp({ urlTemplate: '/users/{{user_id}}' }), 'ERR_INVALID_TARGET', 'http.urlTemplate');
    assertOne(withHttp({ urlTemplate: '{{user_id}}' }), 'ERR_INVALID_TARGET', 'http.urlTemplate');
    const verify = create(asyncBody({ verifyUrlTemplate: 'http://metadata.google.internal/{{user_id}}' }));
    assertOne(verify, 'ERR_INVALID_TARGET', 'verifyUrlTemplate');
    valueOf(create(asyncBody({ verifyUrlTemplate: 'http://localhost:7070/exists/{{user_id}}' })));
  });

  it('requires the body template to be JSON with each placeholder inside a string', () => {
    valueOf(withHttp({ bodyTemplate: '{"ids":["{{user_id}}"],"note":"erase {{email}} now","n":1}' }));
    valueOf(withHttp({ bodyTemplate: '"{{user_id}}"' }));
    for (const bodyTemplate of ['{"id":{{user_id}}}', '{"id":"{{user_id}}"', 'id={{user_id}}', '']) {
      assertOne(withHttp({ bodyTemplate }), 'ERR_INVALID_TARGET', 'http.bodyTemplate');
    }
    assertOne(withHttp({ bodyTemplate: 42 }), 'ERR_VALIDATION', 'http.bodyTemplate');
  });

  it('allows a body template of 64 KiB and no more, counted in UTF-8 bytes', () => {
    const base = '{"id":"{{user_id}}","pad":""}';
    const of = (bytes: number) => {
      const rest = bytes - Buffer.byteLength(base);
      return base.replace('""}', `"${'é'.repeat(Math.floor(rest / 2))}${'a'.repeat(rest % 2)}"}`);
    };
    assert.equal(Buffer.byteLength(of(65_536)), 65_536);
    valueOf(withHttp({ bodyTemplate: of(65_536) }));
    assertOne(withHttp({ bodyTemplate: of(65_537) }), 'ERR_VALIDATION', 'http.bodyTemplate');
  });
});

describe('validateTargetCreate: control characters', () => {
  const cases: [string, unknown][] = [
    ['name', asyncBody({ name: 'ab\u0000' })],
    ['owner', asyncBody({ owner: 'team\u0085' })],
    ['owner', asyncBody({ owner: 'team\u007f' })],
    ['owner', asyncBody({ owner: 'team\u009f' })],
    ['identifierTypes[0]', asyncBody({ identifierTypes: ['user_id\n'] })],
    ['after[0]', asyncBody({ after: ['crm\r'] })],
    ['kind', asyncBody({ kind: 'async_event\u0000' })],
    ['verifyUrlTemplate', asyncBody({ verifyUrlTemplate: 'https://shop.example/\t{{user_id}}' })],
    ['http.urlTemplate', syncBody({ urlTemplate: 'https://shop.example/\n{{user_id}}' })],
    ['http.bodyTemplate', syncBody({ bodyTemplate: '{\n"id":"{{user_id}}"\n}' })],
    ['http.method', syncBody({ method: 'DELETE\u001b' })],
  ];
  for (const [field, body] of cases) {
    it(`refuses them in ${field}`, () => {
      assertOne(create(body), 'ERR_CONTROL_CHARACTERS', field);
    });
  }

  it('accepts other non-ASCII text', () => {
    assert.equal(
      valueOf(create(asyncBody({ owner: 'Équipe Zürich ✓ \u00a0' }))).owner,
      'Équipe Zürich ✓ \u00a0',
    );
  });
});

describe('checkPartnerUrl', () => {
  it('allows http(s) partners, including loopback and private networks', () => {
    for (const url of [
      'https://partner.example/v1/users/x',
      'http://partner.example:8080/x?y=1#z',
      'https://partner.example./x',
      'http://localhost:3000/',
      'http://127.0.0.1:9090/erase',
      'http://@10.0.0.1:8080/x',
      'http://10.0.0.1:/x',
      'http://10.1.2.3/',
      'http://172.16.0.1/',
      'http://192.168.1.10/',
      'http://169.253.255.255/',
      'http://169.255.0.1/',
      'http://1.0.0.0/',
      'http://100.100.100.199/',
      'http://[::1]:8080/',
      'http://[fd12:3456::1]/',
      'http://[fec0::1]/',
      'http://[::ffff:127.0.0.1]/',
      'http://[::ffff:10.0.0.1]/',
      'http://metadata.example.com/',
      'http://my-metadata/',
      'http://instance-data.example/',
    ]) {
      assert.equal(checkPartnerUrl(url), undefined, url);
    }
  });

  it('refuses what is not an absolute URL', () => {
    for (const url of ['/users/x', 'partner.example/x', '', 'http://', 'http://exa mple.com/']) {
      assert.equal(checkPartnerUrl(url), 'is not an absolute URL', url);
    }
  });

  it('refuses schemes other than http and https', () => {
    for (const url of [
      'ftp://partner.example/',
      'file:///etc/passwd',
      'javascript:alert(1)',
      'ws://p.example/',
      'gopher://p.example/',
    ]) {
      assert.equal(checkPartnerUrl(url), 'must use http or https', url);
    }
  });

  it('refuses user info, without echoing it', () => {
    for (const url of [
      'http://user:pass@partner.example/',
      'http://user@partner.example/',
      'http://:pass@partner.example/',
    ]) {
      const reason = checkPartnerUrl(url);
      assert.match(reason ?? '', /username or password/, url);
      assert.ok(!reason?.includes('pass@'));
    }
  });

  it('refuses control characters and surrounding spaces', () => {
    for (const url of [
      ' http://p.example/',
      'http://p.example/ ',
      'http://p.example/\n',
      'http://p.ex\tample/',
    ]) {
      assert.match(checkPartnerUrl(url) ?? '', /control characters/, JSON.stringify(url));
    }
  });

  it('refuses link-local and unspecified IPv4 hosts', () => {
    for (const url of [
      'http://169.254.169.254/latest/meta-data/',
      'http://169.254.0.1/',
      'http://169.254.255.255:8080/',
      'http://169.254.169.254./',
      'http://0.0.0.0/',
      'http://0.1.2.3/',
      'http://100.100.100.200/',
      'http:\\\\169.254.169.254\\x',
      'http:169.254.169.254/x',
      'https://user@169.254.169.254/',
    ]) {
      assert.notEqual(checkPartnerUrl(url), undefined, url);
    }
  });

  it('refuses IPv4 written in decimal, octal, hex or short forms', () => {
    for (const url of [
      'http://2852039166/',
      'http://0xA9FEA9FE/',
      'http://0xa9fea9fe/',
      'http://0251.0376.0251.0376/',
      'http://0xa9.0xfe.0xa9.0xfe/',
      'http://169.254.43518/',
      'http://169.16689662/',
      'http://%31%36%39.254.169.254/',
      'http://0x7f000001/',
      'http://2130706433/',
      'http://127.1/',
      'http://010.0.0.1/',
      'http://10.0.0.01/',
      'http://１６９.２５４.１６９.２５４/',
    ]) {
      assert.equal(checkPartnerUrl(url), 'must write an IPv4 host as four decimal numbers', url);
    }
  });

  it('refuses link-local, unspecified and metadata IPv6 hosts, and IPv4 inside IPv6', () => {
    for (const url of [
      'http://[fe80::1]/',
      'http://[fe80::]:8080/',
      'http://[febf:ffff::1]/',
      'http://[FE80::1]/',
      'http://[::]/',
      'http://[0:0:0:0:0:0:0:0]/',
      'http://[fd00:ec2::254]/',
      'http://[FD00:EC2:0:0:0:0:0:254]/',
      'http://[::ffff:169.254.169.254]/',
      'http://[::ffff:a9fe:a9fe]/',
      'http://[0:0:0:0:0:ffff:a9fe:a9fe]/',
      'http://[::ffff:0.0.0.0]/',
      'http://[::ffff:100.100.100.200]/',
      'http://[64:ff9b::169.254.169.254]/',
      'http://[64:ff9b::0.0.0.1]/',
      'http://[::a9fe:a9fe]/',
      'http://[::169.254.169.254]/',
      'http://[::100.100.100.200]/',
      'http://[64:ff9b:1::a9fe:a9fe]/',
      'http://[64:ff9b:1:a9fe:a9:fe00::]/',
    ]) {
      assert.equal(checkPartnerUrl(url), 'has a link-local or cloud metadata host', url);
    }
  });

  it('refuses cloud metadata host names, in any case, with a trailing dot', () => {
    for (const host of [
      'metadata.google.internal',
      'METADATA.Google.Internal',
      'metadata.google.internal.',
      'metadata',
      'Metadata.',
      'instance-data',
      'instance-data.ec2.internal',
      'Instance-Data.EC2.Internal.',
    ]) {
      assert.equal(checkPartnerUrl(`http://${host}/computeMetadata/v1/`), 'has a cloud metadata host', host);
    }
  });

  it('never repeats the URL in its reason', () => {
    const url = 'http://169.254.169.254/?token=sk_live_secret';
    assert.ok(!checkPartnerUrl(url)?.includes('sk_live_secret'));
  });
});

describe('renderTemplate', () => {
  const values = { user_id: 'a b/c?d&e#f@g%', email: 'x"y\\z\n@example.com' };

  it('URL-encodes each value', () => {
    assert.equal(
      renderTemplate('https://p.example/u/{{user_id}}?e={{email}}', values, 'url'),
      `https://p.example/u/${encodeURIComponent(values.user_id)}?e=${encodeURIComponent(values.email)}`,
    );
  });

  it('JSON-escapes each value so the body parses back to the identifiers', () => {
    const body = renderTemplate(
      '{"userId":"{{user_id}}","email":"{{email}}","again":"{{user_id}}"}',
      values,
      'json',
    );
    assert.deepEqual(JSON.parse(body), {
      userId: values.user_id,
      email: values.email,
      again: values.user_id,
    });
    const tricky = { user_id: '"},"admin":true,"x":"\u2028\ud800' };
    assert.deepEqual(JSON.parse(renderTemplate('{"id":"{{user_id}}"}', tricky, 'json')), {
      id: tricky.user_id,
    });
  });

  it('inserts values unchanged with none', () => {
    assert.equal(
      renderTemplate('{{user_id}}|{{email}}', values, 'none'),
      `${values.user_id}|${values.email}`,
    );
    assert.equal(renderTemplate('no placeholders }} here', {}, 'none'), 'no placeholders }} here');
  });

  it('does not re-expand placeholders that appear inside values', () => {
    assert.equal(renderTemplate('{{user_id}}', { user_id: '{{email}}', email: 'x' }, 'none'), '{{email}}');
  });

  it('throws on a placeholder without a value or a stray "{{"', () => {
    assert.throws(() => renderTemplate('/u/{{phone}}', values, 'url'), /\{\{phone\}\} has no value/);
    assert.throws(() => renderTemplate('/u/{{constructor}}', {}, 'url'), /has no value/);
    assert.throws(() => renderTemplate('/u/{{toString}}', {}, 'none'), /has no value/);
    assert.throws(() => renderTemplate('/u/{{ user_id }}', values, 'url'), /not a placeholder/);
  });

  it('renders what validation accepted', () => {
    const http = valueOf(withHttp({ bodyTemplate: '{"userId":"{{user_id}}"}' })).http!;
    const id = { user_id: 'u-"42"', email: 'a@b.example' };
    assert.equal(
      renderTemplate(http.urlTemplate, id, 'url'),
      'https://shop.example/users/u-%2242%22?email=a%40b.example',
    );
    assert.deepEqual(JSON.parse(renderTemplate(http.bodyTemplate!, id, 'json')), { userId: 'u-"42"' });
  });
});

describe('validateTargetPatch', () => {
  const existing = valueOf(
    create(
      syncBody(
        { headers: { Authorization: 'Bearer old', 'X-Tenant': 't1' }, bodyTemplate: '{"id":"{{user_id}}"}' },
        { owner: 'shop', ackSlaSeconds: 3600, after: ['crm'] },
      ),
    ),
  );
  const patch = (body: unknown, base: TargetInput = existing) => validateTargetPatch(base, body, ctx);

  it('merges the given fields over the stored target', () => {
    const v = valueOf(patch({ paused: true, http: { timeoutMs: 5000 } }));
    assert.deepEqual(v, { ...existing, paused: true, http: { ...existing.http!, timeoutMs: 5000 } });
  });

  it('replaces arrays whole', () => {
    assert.deepEqual(valueOf(patch({ after: ['billing', 'warehouse'] })).after, ['billing', 'warehouse']);
  });

  it('merges headers one by one; null removes one', () => {
    const v = valueOf(
      patch({ http: { headers: { Authorization: 'Bearer new', 'X-Tenant': null, 'X-New': '1' } } }),
    );
    assert.deepEqual(v.http?.headers, { Authorization: 'Bearer new', 'X-New': '1' });
  });

  it('resets a field to its default when given null', () => {
    const v = valueOf(patch({ ackSlaSeconds: null, owner: null, after: null, http: { bodyTemplate: null } }));
    assert.deepEqual(v, {
      ...existing,
      ackSlaSeconds: 86_400,
      owner: null,
      after: [],
      http: { ...existing.http!, bodyTemplate: null },
    });
  });

  it('leaves the stored target untouched', () => {
    const before = structuredClone(existing);
    valueOf(patch({ paused: true, http: { headers: { Authorization: 'Bearer new' } } }));
    assert.deepEqual(existing, before);
  });

  it('refuses to change kind or name, but accepts them unchanged', () => {
    // The stored kind stays, so removing http is a problem of its own.
    assert.deepEqual(found(patch({ kind: 'async_event', http: null })).sort(), [
      'ERR_VALIDATION http',
      'ERR_VALIDATION kind',
    ]);
    assertOne(patch({ name: 'renamed' }), 'ERR_VALIDATION', 'name');
    assertOne(patch({ kind: 'async_event' }), 'ERR_VALIDATION', 'kind');
    valueOf(patch({ name: existing.name, kind: existing.kind, paused: true }));
  });

  it('re-validates the whole target after merging', () => {
    // The stored URL template uses {{email}}, so dropping email from identifierTypes breaks it.
    const r = patch({ identifierTypes: ['user_id'] });
    assertOne(r, 'ERR_INVALID_TARGET', 'http.urlTemplate');
    assertOne(patch({ http: null }), 'ERR_VALIDATION', 'http');
    assertOne(patch({ http: { urlTemplate: null } }), 'ERR_VALIDATION', 'http.urlTemplate');
    assertOne(
      patch({ http: { urlTemplate: 'https://{{user_id}}.shop.example/' } }),
      'ERR_INVALID_TARGET',
      'http.urlTemplate',
    );
    assertOne(
      patch({ http: { headers: { authorization: 'Bearer x' } } }),
      'ERR_VALIDATION',
      'http.headers.authorization',
    );
    assertOne(patch({ after: ['shop-db'] }), 'ERR_VALIDATION', 'after[0]');
  });

  it('reports a kind change together with other problems', () => {
    assert.deepEqual(found(patch({ kind: 'async_event', ackSlaSeconds: 0 })).sort(), [
      'ERR_VALIDATION ackSlaSeconds',
      'ERR_VALIDATION kind',
    ]);
  });

  it('refuses unknown fields, at the top and inside http', () => {
    assert.deepEqual(found(patch({ color: 'blue', http: { retries: 3 } })).sort(), [
      'ERR_UNKNOWN_FIELD color',
      'ERR_UNKNOWN_FIELD http.retries',
    ]);
    assertOne(patch(JSON.parse('{"__proto__":{"paused":true}}')), 'ERR_UNKNOWN_FIELD', '__proto__');
    assert.equal(({} as Record<string, unknown>).paused, undefined);
  });

  it('refuses a body that is not an object', () => {
    for (const body of [null, [], 'x']) assert.deepEqual(found(patch(body)), ['ERR_VALIDATION ']);
  });

  it('refuses http on an async_event target', () => {
    const events = valueOf(create(asyncBody()));
    assertOne(patch({ http: { urlTemplate: 'https://x.example/' } }, events), 'ERR_VALIDATION', 'http');
    assert.equal(valueOf(patch({ owner: 'data' }, events)).owner, 'data');
  });

  it('survives deeply nested input without exhausting the stack', () => {
    let deep: unknown = 'x';
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    assertOne(patch({ http: { headers: { 'X-Deep': deep } } }), 'ERR_VALIDATION', 'http.headers.X-Deep');
    assertOne(patch({ owner: deep }), 'ERR_VALIDATION', 'owner');
  });
});
