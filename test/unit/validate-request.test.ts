import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { checkIdempotencyKey, validateErasureRequest } from '../../services/api/intake/validate-request.ts';
import { BUILTIN_TYPES, type IdentifierType } from '../../services/shared/identifiers.ts';
import { ErasureError } from '../../services/shared/errors.ts';
import { addPolicyInterval, REASON_POLICY } from '../../services/shared/reasons.ts';

const types = new Map<string, IdentifierType>(BUILTIN_TYPES.map((t) => [t.name, t]));
const codeOf = (fn: () => unknown) => {
  try {
    fn();
  } catch (err) {
    if (err instanceof ErasureError) return err.code;
    throw err;
  }
  return 'no error';
};
const valid = { identifiers: [{ type: 'user_id', value: '42' }], reason: 'gdpr_art17' };

describe('erasure request validation', () => {
  it('fills the priority from the reason and accepts an explicit one', () => {
    assert.equal(validateErasureRequest(valid, types).priority, 'legal');
    assert.equal(validateErasureRequest({ ...valid, reason: 'tester_cleanup' }, types).priority, 'bulk');
    assert.equal(validateErasureRequest({ ...valid, priority: 'normal' }, types).priority, 'normal');
  });

  it('gives each bad input its stable code', () => {
    const cases: [unknown, string][] = [
      [[], 'ERR_VALIDATION'],
      ['text', 'ERR_VALIDATION'],
      [{ ...valid, extra: 1 }, 'ERR_UNKNOWN_FIELD'],
      [{ ...valid, identifiers: [] }, 'ERR_VALIDATION'],
      [{ reason: 'gdpr_art17' }, 'ERR_VALIDATION'],
      [{ ...valid, identifiers: [{ type: 'user_id' }] }, 'ERR_VALIDATION'],
      [{ ...valid, identifiers: [{ type: 'user_id', value: 42 }] }, 'ERR_VALIDATION'],
      [{ ...valid, identifiers: [{ type: 'user_id', value: '1', more: 1 }] }, 'ERR_UNKNOWN_FIELD'],
      [{ ...valid, identifiers: [{ type: 'ssn', value: '1' }] }, 'ERR_UNKNOWN_IDENTIFIER_TYPE'],
      [{ ...valid, identifiers: [{ type: 'email', value: 'nope' }] }, 'ERR_INVALID_IDENTIFIER'],
      [{ ...valid, identifiers: [{ type: 'phone', value: '12' }] }, 'ERR_INVALID_IDENTIFIER'],
      [{ ...valid, identifiers: [{ type: 'user_id', value: 'a\u0000b' }] }, 'ERR_CONTROL_CHARACTERS'],
      [{ ...valid, identifiers: [{ type: 'user_id', value: 'a\u009bb' }] }, 'ERR_CONTROL_CHARACTERS'],
      [{ ...valid, reason: 'because' }, 'ERR_VALIDATION'],
      [{ ...valid, priority: 'urgent' }, 'ERR_VALIDATION'],
      [{ ...valid, notBefore: 'tomorrow' }, 'ERR_VALIDATION'],
      [{ ...valid, notBefore: '2026-01-01T00:00:00' }, 'ERR_VALIDATION'],
      [{ ...valid, notBefore: '2999-01-01T00:00:00Z' }, 'ERR_VALIDATION'],
      // Year 0 / BC in UTC: PostgreSQL stores it as BC and the relay cannot encode it.
      [{ ...valid, notBefore: '0000-01-01T00:00:00Z' }, 'ERR_VALIDATION'],
      [{ ...valid, notBefore: '0001-01-01T00:00:00+01:00' }, 'ERR_VALIDATION'],
      [{ ...valid, notBefore: '1969-12-31T23:59:59.999Z' }, 'ERR_VALIDATION'],
      [
        { ...valid, identifiers: Array.from({ length: 21 }, (_, i) => ({ type: 'user_id', value: `${i}` })) },
        'ERR_VALIDATION',
      ],
    ];
    for (const [body, code] of cases)
      assert.equal(
        codeOf(() => validateErasureRequest(body, types)),
        code,
        JSON.stringify(body),
      );
  });

  it('takes notBefore from 1970-01-01T00:00:00Z to 90 days ahead, past times included', () => {
    const now = new Date('2026-06-01T00:00:00Z');
    for (const notBefore of ['1970-01-01T00:00:00Z', '1970-01-01T01:00:00+01:00', '2020-01-01T00:00Z'])
      assert.equal(
        validateErasureRequest({ ...valid, notBefore }, types, [], now).notBefore?.toISOString(),
        new Date(notBefore).toISOString(),
      );
    assert.equal(
      codeOf(() =>
        validateErasureRequest({ ...valid, notBefore: '1970-01-01T00:59:59+01:00' }, types, [], now),
      ),
      'ERR_VALIDATION',
    );
  });

  it('refuses a grace period that ends on or after a legal deadline, not a house one', () => {
    const now = new Date('2026-01-31T12:00:00Z');
    const at = (iso: string, reason: string) => () =>
      validateErasureRequest({ ...valid, reason, notBefore: iso }, types, [], now);
    // January 31 + 1 month is February 28 (PostgreSQL's month arithmetic).
    assert.equal(
      at('2026-02-28T11:59:59Z', 'gdpr_art17')().notBefore?.toISOString(),
      '2026-02-28T11:59:59.000Z',
    );
    assert.equal(codeOf(at('2026-02-28T12:00:00Z', 'gdpr_art17')), 'ERR_VALIDATION');
    assert.equal(codeOf(at('2026-03-17T12:00:00Z', 'ccpa')), 'ERR_VALIDATION');
    assert.equal(at('2026-03-17T11:00:00Z', 'ccpa')().reason, 'ccpa');
    for (const reason of ['account_deletion', 'tester_cleanup', 'retention_expiry'])
      assert.equal(at('2026-04-01T00:00:00Z', reason)().reason, reason);
  });

  it('adds policy intervals as PostgreSQL does', () => {
    const d = (iso: string) => new Date(iso);
    assert.equal(
      addPolicyInterval(d('2026-01-31T12:00:00Z'), '1 month').toISOString(),
      '2026-02-28T12:00:00.000Z',
    );
    assert.equal(
      addPolicyInterval(d('2028-01-31T00:00:00Z'), '1 month').toISOString(),
      '2028-02-29T00:00:00.000Z',
    );
    assert.equal(
      addPolicyInterval(d('2026-12-15T08:30:00Z'), '1 month').toISOString(),
      '2027-01-15T08:30:00.000Z',
    );
    assert.equal(
      addPolicyInterval(d('2026-01-01T00:00:00Z'), '45 days').toISOString(),
      '2026-02-15T00:00:00.000Z',
    );
    for (const interval of Object.values(REASON_POLICY).map((p) => p.deadline))
      assert.ok(addPolicyInterval(d('2026-01-01T00:00:00Z'), interval).getTime() > 0, interval);
    assert.throws(() => addPolicyInterval(d('2026-01-01T00:00:00Z'), '1 week'), /unsupported/);
  });

  it('checks Idempotency-Key presence and shape', () => {
    assert.equal(
      codeOf(() => checkIdempotencyKey(undefined)),
      'ERR_IDEMPOTENCY_KEY_MISSING',
    );
    assert.equal(
      codeOf(() => checkIdempotencyKey('')),
      'ERR_IDEMPOTENCY_KEY_MISSING',
    );
    assert.equal(
      codeOf(() => checkIdempotencyKey('has space')),
      'ERR_VALIDATION',
    );
    assert.equal(
      codeOf(() => checkIdempotencyKey('k'.repeat(256))),
      'ERR_VALIDATION',
    );
    assert.equal(checkIdempotencyKey('order-123:retry'), 'order-123:retry');
  });

  it('hashes bodies so that only meaning counts: order, case, spacing and duplicates do not change it', () => {
    const ident = fc.record({
      type: fc.constantFrom('user_id', 'email'),
      local: fc.stringMatching(/^[a-z0-9]{1,12}$/),
    });
    fc.assert(
      fc.property(
        fc.uniqueArray(ident, { minLength: 1, maxLength: 6, selector: (i) => `${i.type}:${i.local}` }),
        (ids) => {
          const make = (upper: boolean) =>
            ids.map((i) => ({
              type: i.type,
              value:
                i.type === 'email'
                  ? `${upper ? i.local.toUpperCase() : i.local}@Example.com`
                  : ` ${i.local} `,
            }));
          const a = validateErasureRequest({ identifiers: make(false), reason: 'ccpa' }, types);
          const shuffled = [...make(true)].reverse();
          const b = validateErasureRequest(
            { identifiers: [...shuffled, shuffled[0]!], reason: 'ccpa' },
            types,
          );
          assert.deepEqual(a.bodySha256, b.bodySha256);
          const c = validateErasureRequest({ identifiers: make(false), reason: 'gdpr_art17' }, types);
          assert.notDeepEqual(a.bodySha256, c.bodySha256);
        },
      ),
    );
  });

  it('hashes one set the same whatever its order when one type name prefixes another', () => {
    const withV2 = new Map(types);
    withV2.set('user_id_v2', {
      name: 'user_id_v2',
      builtin: false,
      pattern: null,
      maxLength: 64,
      lowercase: false,
    });
    // 'user_id' + '_v2x' and 'user_id_v2' + 'x' concatenate to the same string.
    const ids = [
      { type: 'user_id', value: '_v2x' },
      { type: 'user_id_v2', value: 'x' },
    ];
    const a = validateErasureRequest({ identifiers: ids, reason: 'ccpa' }, withV2);
    const b = validateErasureRequest({ identifiers: [...ids].reverse(), reason: 'ccpa' }, withV2);
    assert.deepEqual(a.bodySha256, b.bodySha256);
  });
});
