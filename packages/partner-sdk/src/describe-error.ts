const MAX_DETAIL = 500;

/**
 * A handler's error as text safe for an ack's `detail`, a dead-letter header and a log line.
 * Partner errors often quote what they looked up ("no row for a@b.example"), so every
 * identifier value of the event is cut out, then quoted spans (drivers quote offending input,
 * e.g. PostgreSQL's `invalid input syntax for type uuid: "..."`). Longest values first, so a
 * value containing another is removed whole.
 */
export function describeError(err: unknown, identifierValues: readonly string[]): string {
  const name = err instanceof Error ? err.name : 'Error';
  const message = redactValues(err instanceof Error ? err.message : String(err), identifierValues);
  return truncate(`${name}: ${message.replace(/"[^"]*"|'[^']*'/g, '"…"')}`);
}

/**
 * Cuts the event's identifier values out of free text (also applied to a handler's own
 * `detail`, as a second line of defence). Case-insensitive: a partner may have upper-cased
 * an email before quoting it.
 */
export function redactValues(text: string, identifierValues: readonly string[]): string {
  const values = [...new Set(identifierValues)]
    .filter((v) => v.length > 0)
    .sort((a, b) => b.length - a.length);
  let out = text;
  for (const value of values) out = out.replace(new RegExp(escapeRegExp(value), 'gi'), '[redacted]');
  return out;
}

export function truncate(text: string): string {
  return text.length > MAX_DETAIL ? `${text.slice(0, MAX_DETAIL - 1)}…` : text;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
