import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  BUILTIN_TYPES,
  checkCustomPattern,
  normaliseIdentifier,
  type IdentifierType,
} from '../../services/shared/identifiers.ts';

const types = new Map<string, IdentifierType>(BUILTIN_TYPES.map((t) => [t.name, t]));
types.set('loyalty_card', {
  name: 'loyalty_card',
  builtin: false,
  pattern: 'LC-[0-9]{4}',
  maxLength: 7,
  lowercase: false,
});
const norm = (type: string, value: string) => normaliseIdentifier({ type, value }, types);

describe('identifier normalisation', () => {
  it('lower-cases and validates email', () => {
    assert.deepEqual(norm('email', '  A.B+tag@Example.COM '), { value: 'a.b+tag@example.com' });
    for (const bad of [
      'a@b',
      'a@@b.example',
      'no-at.example',
      'a b@c.example',
      '@b.example',
      'a@b..example',
    ]) {
      assert.equal((norm('email', bad) as { code: string }).code, 'ERR_INVALID_IDENTIFIER', bad);
    }
  });

  it('normalises phone numbers to E.164 and refuses numbers without a country code', () => {
    assert.deepEqual(norm('phone', '+1 (415) 555-0100'), { value: '+14155550100' });
    assert.deepEqual(norm('phone', '+44.20.7946.0958'), { value: '+442079460958' });
    for (const bad of ['4155550100', '+0123456789', '+1', '+1234567890123456', '+1-415-CALL-NOW']) {
      assert.equal((norm('phone', bad) as { code: string }).code, 'ERR_INVALID_IDENTIFIER', bad);
    }
  });

  it('keeps user ids and device ids verbatim (trimmed): a partner may keep them case-sensitively', () => {
    assert.deepEqual(norm('user_id', ' AbC-42 '), { value: 'AbC-42' });
    // An iOS advertising id, upper-case by convention: lower-cased, its holder answers not_found.
    assert.deepEqual(norm('device_id', ' 6D92078A-8246-4BA4-AE5B-76104861E7DC '), {
      value: '6D92078A-8246-4BA4-AE5B-76104861E7DC',
    });
    assert.equal((norm('user_id', '   ') as { code: string }).code, 'ERR_INVALID_IDENTIFIER');
    assert.equal((norm('user_id', 'x'.repeat(257)) as { code: string }).code, 'ERR_INVALID_IDENTIFIER');
  });

  it('treats a value made only of invisible characters as empty, in every type', () => {
    for (const value of [
      '\u200b',
      '\u200c\u200d',
      '\u2060',
      '\ufeff\u200b',
      ' \u00ad ',
      '\u180e',
      '\u{E0001}\u{E0020}',
      '\u3164',
    ])
      for (const type of ['user_id', 'device_id', 'email', 'phone', 'loyalty_card']) {
        const res = norm(type, value) as { code: string; message: string };
        assert.equal(res.code, 'ERR_INVALID_IDENTIFIER', `${type} ${JSON.stringify(value)}`);
        assert.match(res.message, /is empty/);
      }
    // Visible text with such a character in it is still a value (not changed here).
    assert.deepEqual(norm('user_id', 'a\u200bb'), { value: 'a\u200bb' });
    assert.deepEqual(norm('user_id', '\u00e9t\u00e9'), { value: '\u00e9t\u00e9' });
  });

  it('applies a custom type’s pattern and length, anchored', () => {
    assert.deepEqual(norm('loyalty_card', 'LC-1234'), { value: 'LC-1234' });
    assert.equal((norm('loyalty_card', 'xLC-1234') as { code: string }).code, 'ERR_INVALID_IDENTIFIER');
    assert.equal((norm('loyalty_card', 'LC-12345') as { code: string }).code, 'ERR_INVALID_IDENTIFIER');
  });

  it('names an unknown type without echoing the value', () => {
    const res = norm('passport', 'P1234567') as { code: string; message: string };
    assert.equal(res.code, 'ERR_UNKNOWN_IDENTIFIER_TYPE');
    assert.doesNotMatch(res.message, /P1234567/);
    const bad = norm('email', 'secret-value-no-at') as { message: string };
    assert.doesNotMatch(bad.message, /secret-value/);
  });

  it('takes RE2 patterns only (linear-time matching): no backreferences or lookarounds', () => {
    assert.equal(checkCustomPattern('[0-9]{6}'), undefined);
    assert.equal(checkCustomPattern('(a+)+'), undefined, 'harmless in a linear-time engine');
    assert.match(checkCustomPattern('(')!, /not a valid RE2/);
    assert.match(checkCustomPattern('(a)\\1')!, /not a valid RE2/);
    assert.match(checkCustomPattern('(?=a)b')!, /not a valid RE2/);
    assert.match(checkCustomPattern('x'.repeat(600))!, /longer than/);
  });

  it('matches custom patterns in full, in linear time, even patterns that backtrack in JavaScript', () => {
    // (a|a)*b on 24 a's and a near miss: 2^24 paths for a backtracking engine.
    const types = new Map([
      [
        'legacy_ref',
        { name: 'legacy_ref', builtin: false, pattern: '(a|a)*b', maxLength: 256, lowercase: false },
      ],
      ['cust', { name: 'cust', builtin: false, pattern: 'CUST-[0-9]{4}', maxLength: 64, lowercase: false }],
    ]);
    const near = normaliseIdentifier({ type: 'legacy_ref', value: `${'a'.repeat(24)}!` }, types);
    assert.equal((near as { code: string }).code, 'ERR_INVALID_IDENTIFIER');
    assert.deepEqual(normaliseIdentifier({ type: 'legacy_ref', value: 'aaab' }, types), { value: 'aaab' });
    assert.deepEqual(normaliseIdentifier({ type: 'cust', value: 'CUST-0042' }, types), {
      value: 'CUST-0042',
    });
    const partial = normaliseIdentifier({ type: 'cust', value: 'CUST-00421' }, types);
    assert.equal((partial as { code: string }).code, 'ERR_INVALID_IDENTIFIER', 'a full match, not a prefix');
  });
});
