/**
 * Retry-After (RFC 9110 §10.2.3): either delay-seconds or an HTTP-date. Partner responses
 * are untrusted input, so anything else is ignored (the backoff decides alone) and the
 * result is clamped: a partner cannot park a task for a year, or make us retry at once
 * with a date in the past beyond what the backoff would have chosen anyway.
 *
 * @param value the header's value, or null when absent.
 * @param nowMs the caller's clock, in epoch milliseconds (injected for tests).
 * @param capMs the longest wait honoured, in milliseconds.
 * @returns the wait in whole milliseconds within [0, capMs], or undefined when absent or unusable.
 */
export function parseRetryAfter(
  value: string | null | undefined,
  nowMs: number,
  capMs: number,
): number | undefined {
  if (value === null || value === undefined) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  if (/^\d{1,10}$/.test(v)) return Math.min(capMs, Number(v) * 1000);
  // IMF-fixdate and the two obsolete forms all start with a day name; refusing bare numbers
  // and ISO strings here keeps Date.parse's leniency from accepting what HTTP does not.
  if (!/^[A-Za-z]{3,9},? /.test(v)) return undefined;
  const at = Date.parse(v);
  if (!Number.isFinite(at)) return undefined;
  return Math.min(capMs, Math.max(0, Math.ceil(at - nowMs)));
}
