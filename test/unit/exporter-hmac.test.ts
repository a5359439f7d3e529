/**
 * The exporter's HMAC-SHA256 (services/exporter/hmac-sha256.ts): the JS one and the native
 * add-on (native/hmac_column.c) against node:crypto.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  HmacSha256,
  jsIdentifierHmac,
  loadNativeHmac,
  nativeIdentifierHmac,
  type IdentifierHmac,
} from '../../services/exporter/hmac-sha256.ts';
import { identifierHmac } from '../../services/shared/dataset/dataset-schema.ts';

describe('exporter HMAC-SHA256', () => {
  it('matches node:crypto for any key and message, at any offset', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 0, maxLength: 150 }),
        fc.uint8Array({ minLength: 0, maxLength: 300 }),
        fc.nat(7),
        fc.nat(5),
        (key, msg, lead, outLead) => {
          const h = new HmacSha256(key);
          const buf = new Uint8Array(lead + msg.length + 3);
          buf.set(msg, lead);
          const out = new Uint8Array(outLead + 40).fill(0xaa);
          h.digestInto(buf, lead, lead + msg.length, out, outLead);
          const want = createHmac('sha256', key).update(msg).digest();
          assert.deepEqual(Buffer.from(out.subarray(outLead, outLead + 32)), want);
          assert.ok(
            out.subarray(outLead + 32).every((b) => b === 0xaa),
            'writes only 32 bytes',
          );
          assert.ok(out.subarray(0, outLead).every((b) => b === 0xaa));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('is reusable: the same instance gives the same digests in any order', () => {
    const key = Buffer.from('dataset-key-0123456789abcdef0123456789');
    const h = new HmacSha256(key);
    const msgs = ['user_id\u000012345', 'email\u0000ä@example.org', '', 'x'.repeat(119), 'y'.repeat(55)];
    for (const m of [...msgs, ...msgs.reverse()]) {
      const b = Buffer.from(m, 'utf8');
      const out = Buffer.alloc(32);
      h.digestInto(b, 0, b.length, out, 0);
      assert.deepEqual(out, createHmac('sha256', key).update(b).digest());
    }
  });

  it('gives the dataset identifier_hmac of type NUL value', () => {
    const key = Buffer.from('bench-dataset-hmac-key-0123456789abcdef');
    const b = Buffer.from('email\u0000someone@example.org', 'utf8');
    const out = Buffer.alloc(32);
    new HmacSha256(key).digestInto(b, 0, b.length, out, 0);
    assert.deepEqual(out, identifierHmac(key, 'email', 'someone@example.org'));
  });

  it('sha256 matches node:crypto', () => {
    for (const n of [0, 1, 55, 56, 63, 64, 65, 200]) {
      const m = Buffer.alloc(n, 7);
      assert.deepEqual(Buffer.from(HmacSha256.sha256(m)), createHash('sha256').update(m).digest());
    }
  });
});

/** PLAIN BYTE_ARRAY bytes: per value a little-endian uint32 length, then the bytes. */
function plain(values: readonly Uint8Array[]): Uint8Array {
  const out = Buffer.alloc(values.reduce((n, v) => n + 4 + v.length, 0));
  let pos = 0;
  for (const v of values) {
    out.writeUInt32LE(v.length, pos);
    out.set(v, pos + 4);
    pos += 4 + v.length;
  }
  return out;
}

const native = loadNativeHmac();
const nativeSkip = 'reason' in native ? `native add-on not loaded: ${native.reason}` : false;
const implementations: [string, (key: Uint8Array) => IdentifierHmac, string | false][] = [
  ['js', jsIdentifierHmac, false],
  [
    'native',
    (key) => ('mod' in native ? nativeIdentifierHmac(native.mod, key) : jsIdentifierHmac(key)),
    nativeSkip,
  ],
];

for (const [name, make, skip] of implementations) {
  describe(`identifier_hmac column (${name})`, { skip }, () => {
    it('is HMAC(key, type NUL value) of every row, for any key, types and values', () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: 0, maxLength: 150 }),
          fc.array(fc.string({ maxLength: 20 }), { minLength: 1, maxLength: 4 }),
          fc.array(fc.tuple(fc.nat(), fc.uint8Array({ maxLength: 200 })), { maxLength: 40 }),
          (key, typeNames, rows) => {
            const idx = Int32Array.from(rows.map(([t]) => t % typeNames.length));
            const out = make(key).column(typeNames, idx, plain(rows.map(([, v]) => v)), rows.length);
            assert.equal(out.length, 32 * rows.length);
            rows.forEach(([, v], row) => {
              const msg = Buffer.concat([Buffer.from(typeNames[idx[row]!]!, 'utf8'), Buffer.from([0]), v]);
              const want = createHmac('sha256', key).update(msg).digest();
              assert.deepEqual(Buffer.from(out.subarray(32 * row, 32 * row + 32)), want, `row ${row}`);
            });
          },
        ),
        { numRuns: 300 },
      );
    });

    it('matches the dataset identifierHmac', () => {
      const key = Buffer.from('bench-dataset-hmac-key-0123456789abcdef');
      const values = ['someone@example.org', '+4915112345678', 'ä'.repeat(40)];
      const out = make(key).column(
        ['email', 'phone'],
        Int32Array.from([0, 1, 0]),
        plain(values.map((v) => Buffer.from(v))),
        3,
      );
      values.forEach((v, i) =>
        assert.deepEqual(
          Buffer.from(out.subarray(32 * i, 32 * i + 32)),
          identifierHmac(key, i === 1 ? 'phone' : 'email', v),
        ),
      );
    });
  });
}

describe('native HMAC add-on', () => {
  it('is built and loads wherever a C compiler is on PATH (scripts/ensure-deps.mjs)', (t) => {
    if (spawnSync('cc', ['--version']).status !== 0) return t.skip('no cc on PATH');
    assert.ok('mod' in native, nativeSkip || '');
  });

  it('refuses malformed input instead of reading past a buffer', { skip: nativeSkip }, () => {
    if (!('mod' in native)) return;
    const m = native.mod;
    const key = m.prepareKey(Buffer.from('k'));
    const types = Buffer.from('user_id');
    const ends = Int32Array.from([7]);
    const values = plain([Buffer.from('123')]);
    const out = new Uint8Array(64);
    const call = (over: Partial<Record<'types' | 'ends' | 'idx' | 'len' | 'rows' | 'out', unknown>>) => () =>
      m.hmacColumn(
        key,
        (over.types ?? types) as Uint8Array,
        (over.ends ?? ends) as Int32Array,
        (over.idx ?? Int32Array.from([0, 0])) as Int32Array,
        values,
        (over.len ?? values.length) as number,
        (over.rows ?? 1) as number,
        (over.out ?? out) as Uint8Array,
      );
    call({})();
    const cases: [string, Parameters<typeof call>[0]][] = [
      ['a value runs past the given length', { len: values.length - 1 }],
      ['more rows than values', { rows: 2 }],
      ['a type index out of range', { idx: Int32Array.from([1]) }],
      ['a type ending past its bytes', { ends: Int32Array.from([8]) }],
      ['an output too small', { out: new Uint8Array(31) }],
      ['a length beyond the buffer', { len: values.length + 1 }],
      ['not a typed array', { types: 'user_id' }],
    ];
    for (const [what, over] of cases) assert.throws(call(over), { code: 'ERR_NATIVE_HMAC' }, what);
    assert.throws(
      () => m.hmacColumn(Buffer.alloc(3), types, ends, Int32Array.from([0]), values, values.length, 1, out),
      {
        code: 'ERR_NATIVE_HMAC',
      },
    );
  });
});
