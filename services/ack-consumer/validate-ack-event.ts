/**
 * Checks a decoded ack event before it touches the database. Pure: no I/O, so every branch
 * has a unit test. The event is partner input; nothing in it is trusted.
 */
import { ACK_STATUSES, type AckInput, type AckStatus } from '../shared/apply-ack.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/** Same rule as the targets table's CHECK: anything else cannot name a task. */
const TARGET_NAME = /^[a-z][a-z0-9_.-]{1,62}$/;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;

export type AckEventCheck = { ok: true; ack: AckInput; warning?: string } | { ok: false; reason: string };

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/** Epoch milliseconds (the Avro long) or a Date (if a codec maps timestamp-millis). */
function toDate(v: unknown): Date | undefined {
  const ms = v instanceof Date ? v.getTime() : typeof v === 'number' ? v : Number.NaN;
  return Number.isFinite(ms) && ms > 0 ? new Date(ms) : undefined;
}

/**
 * Invalid (skipped): a request id that is not a UUID, a target that is not a target name, a
 * missing or non-date `ackedAt`, a `detail` that is not text. Reasons name the field, never
 * its value. An unknown `status` is not skipped: as the Avro schema documents, it becomes a
 * failed task a person sees (the partner did answer, and "unknown" must not read as
 * "deleted"), with `warning` set so the caller logs it. A malformed `eventId` (evidence only)
 * is dropped rather than losing the ack.
 */
export function validateAckEvent(event: unknown): AckEventCheck {
  if (!isObject(event)) return { ok: false, reason: 'event is not a record' };
  const { requestId, target, status, detail, ackedAt, eventId } = event;
  if (typeof requestId !== 'string' || !UUID.test(requestId))
    return { ok: false, reason: 'requestId is not a UUID' };
  if (typeof target !== 'string' || !TARGET_NAME.test(target))
    return { ok: false, reason: 'target is not a target name' };
  if (detail !== null && detail !== undefined && typeof detail !== 'string')
    return { ok: false, reason: 'detail is not text' };
  const at = toDate(ackedAt);
  if (!at) return { ok: false, reason: 'ackedAt is not a timestamp' };

  const known = (ACK_STATUSES as readonly unknown[]).includes(status);
  const text = typeof detail === 'string' ? detail : null;
  const ack: AckInput = {
    requestId: requestId.toLowerCase(),
    target,
    status: known ? (status as AckStatus) : 'failed',
    detail: known ? text : unknownStatusDetail(status, text),
    ackedAt: at,
    eventId: typeof eventId === 'string' && UUID.test(eventId) ? eventId.toLowerCase() : null,
  };
  if (known) return { ok: true, ack };
  return { ok: true, ack, warning: 'unknown status; recorded as a failed task' };
}

/** The failure cause a person reads for an unknown status: the status (cut short) and the detail. */
function unknownStatusDetail(status: unknown, detail: string | null): string {
  const shown = typeof status === 'string' ? status.replace(CONTROLS, ' ').slice(0, 40) : typeof status;
  return `unknown ack status "${shown}"${detail ? `: ${detail}` : ''}`;
}
