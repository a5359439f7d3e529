/**
 * Identifier types and their validation and normalisation. Built-in types are defined
 * here; custom types are registered by an admin (table identifier_types) with an anchored
 * regular expression. Normalising makes the same person's identifier compare equal
 * ("A@B.example" and "a@b.example") so one subject is never erased twice or missed.
 */
import { RE2JS } from 're2js';

export interface IdentifierType {
  name: string;
  builtin: boolean;
  /** For custom types: the value must match this (anchored) regular expression. */
  pattern: string | null;
  maxLength: number;
  lowercase: boolean;
}

export interface Identifier {
  type: string;
  value: string;
}

export type IdentifierProblem =
  | { code: 'ERR_UNKNOWN_IDENTIFIER_TYPE'; message: string }
  | { code: 'ERR_INVALID_IDENTIFIER'; message: string };

export const BUILTIN_TYPES: readonly IdentifierType[] = [
  { name: 'user_id', builtin: true, pattern: null, maxLength: 256, lowercase: false },
  { name: 'email', builtin: true, pattern: null, maxLength: 254, lowercase: true },
  { name: 'phone', builtin: true, pattern: null, maxLength: 32, lowercase: false },
  { name: 'device_id', builtin: true, pattern: null, maxLength: 256, lowercase: false },
];

// Pragmatic address check (RFC 5321 lengths, dot-atom local part, hostname labels); the
// goal is catching mistakes, not accepting every RFC 5322 oddity.
const EMAIL =
  /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/;
const E164 = /^\+[1-9]\d{6,14}$/;
const INVISIBLE_ONLY = /^[\p{Cf}\p{Default_Ignorable_Code_Point}\s]+$/u;
const OPAQUE = /^[\x21-\x7e\u00a0-\uffff](?:[\x20-\x7e\u00a0-\uffff]*[\x21-\x7e\u00a0-\uffff])?$/;

/**
 * Custom patterns run on RE2JS, a linear-time engine: an admin's pattern such as `(a|a)*b`
 * would otherwise let any submitter's value hold the event loop for seconds (V8's engine
 * backtracks exponentially on a near miss). null: a stored pattern RE2 cannot compile
 * (registered before patterns were checked against it), which no value matches.
 */
const compiled = new Map<string, RE2JS | null>();
function customRegex(pattern: string): RE2JS | null {
  let re = compiled.get(pattern);
  if (re === undefined) {
    try {
      re = RE2JS.compile(pattern);
    } catch {
      re = null;
    }
    compiled.set(pattern, re);
  }
  return re;
}

/** Returns the normalised value, or a problem naming what is wrong (never the value). */
export function normaliseIdentifier(
  id: Identifier,
  types: ReadonlyMap<string, IdentifierType>,
): { value: string } | IdentifierProblem {
  const t = types.get(id.type);
  if (!t) return { code: 'ERR_UNKNOWN_IDENTIFIER_TYPE', message: `unknown identifier type "${id.type}"` };
  let v = id.value.normalize('NFC').trim();
  // Made only of characters that show nothing (U+200B zero width space, U+2060 word joiner,
  // U+FEFF, soft hyphens, variation selectors...): empty to a person reading it, and no
  // system holds a subject under such an identifier. Checked only for a non-ASCII start.
  if (v.length === 0 || (v.charCodeAt(0) > 0x7f && INVISIBLE_ONLY.test(v))) return invalid(t, 'is empty');
  if (v.length > t.maxLength) return invalid(t, `is longer than ${t.maxLength} characters`);
  switch (t.name) {
    case 'email':
      v = v.toLowerCase();
      if (!EMAIL.test(v)) return invalid(t, 'is not a valid email address');
      return { value: v };
    case 'phone': {
      const compact = v.replace(/[\s().-]/g, '');
      if (!E164.test(compact)) return invalid(t, 'is not an E.164 phone number (+ and 7 to 15 digits)');
      return { value: compact };
    }
    case 'user_id':
    case 'device_id':
      if (!OPAQUE.test(v)) return invalid(t, 'contains characters that are not allowed');
      return { value: t.lowercase ? v.toLowerCase() : v };
    default:
      if (t.lowercase) v = v.toLowerCase();
      if (!OPAQUE.test(v)) return invalid(t, 'contains characters that are not allowed');
      if (t.pattern) {
        const re = customRegex(t.pattern);
        if (!re) return invalid(t, 'cannot be checked: its type has a pattern RE2 cannot run');
        if (!re.matches(v)) return invalid(t, `does not match the ${t.name} format`);
      }
      return { value: v };
  }
}

function invalid(t: IdentifierType, why: string): IdentifierProblem {
  return { code: 'ERR_INVALID_IDENTIFIER', message: `${t.name} value ${why}` };
}

/**
 * Validates an admin-supplied pattern: RE2 syntax, which RE2JS matches in time linear in
 * the value's length (no backreferences or lookarounds). A value must match it in full.
 */
export function checkCustomPattern(pattern: string): string | undefined {
  if (pattern.length > 512) return 'pattern is longer than 512 characters';
  try {
    RE2JS.compile(pattern);
  } catch (err) {
    // RE2's parser names the construct, never a value: e.g. "invalid escape sequence: `\1`".
    return `pattern is not a valid RE2 regular expression (${(err as Error).message.slice(0, 120)})`;
  }
  return undefined;
}
