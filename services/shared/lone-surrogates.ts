/**
 * UTF-16 surrogates without their other half. Not characters: valid UTF-8 cannot encode
 * them, but a JSON escape ("\ud800") or an Avro string decoded by JavaScript can carry one,
 * JSON.stringify writes it back as an escape, and PostgreSQL refuses that in jsonb (22P02).
 * (String.prototype.isWellFormed / toWellFormed do this on Node 20, but the ES2022 library
 * the project type-checks against does not declare them.)
 */
const PATTERN = '[\\uD800-\\uDBFF](?![\\uDC00-\\uDFFF])|(?<![\\uD800-\\uDBFF])[\\uDC00-\\uDFFF]';
const ONE = new RegExp(PATTERN);
const ALL = new RegExp(PATTERN, 'g');

export function hasLoneSurrogate(s: string): boolean {
  return ONE.test(s);
}

/** Each lone surrogate becomes U+FFFD, as a UTF-8 decoder does with bytes it cannot read. */
export function replaceLoneSurrogates(s: string): string {
  return s.replace(ALL, '\uFFFD');
}
