/** The exporter's in-place HMAC-SHA256 (services/exporter/hmac-sha256.ts) against node:crypto. */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HmacSha256 } from '../../services/exporter/hmac-sha256.ts';
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
