import { Router, type Request } from 'express';
import type pg from 'pg';
import { ACK_STATUSES, applyAck, type AckStatus } from '../../shared/apply-ack.ts';
import { problem } from '../../shared/errors.ts';
import { requireScope } from '../auth/authenticate.ts';
import { CONTROL_CHARACTERS, readJsonBody } from '../http/read-json-body.ts';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const FIELDS = ['requestId', 'target', 'status', 'detail'];

interface AckBody {
  requestId: string;
  target: string;
  status: AckStatus;
  detail: string | null;
}

/**
 * The body, checked field by field. `detail` is free text a person reads, so control
 * characters in it are replaced when stored (apply-ack.ts) rather than refused; the
 * identifying fields refuse them like every other name in the API.
 */
function validateAckBody(body: unknown): AckBody {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw problem('ERR_VALIDATION', 'the body must be a JSON object');
  const b = body as Record<string, unknown>;
  const extra = Object.keys(b).find((k) => !FIELDS.includes(k));
  if (extra)
    throw problem('ERR_UNKNOWN_FIELD', `unknown field "${extra.slice(0, 64)}"`, {
      field: extra.slice(0, 64),
    });
  for (const k of ['requestId', 'target'])
    if (typeof b[k] === 'string' && CONTROL_CHARACTERS.test(b[k]))
      throw problem('ERR_CONTROL_CHARACTERS', `${k} contains control characters`, { field: k });
  const { requestId, target, status, detail = null } = b;
  if (typeof requestId !== 'string' || !UUID.test(requestId))
    throw problem('ERR_VALIDATION', 'requestId must be a UUID', { field: 'requestId' });
  if (typeof target !== 'string' || target.length === 0 || target.length > 63)
    throw problem('ERR_VALIDATION', 'target must be a target name', { field: 'target' });
  if (!(ACK_STATUSES as readonly unknown[]).includes(status))
    throw problem('ERR_VALIDATION', `status must be one of ${ACK_STATUSES.join(', ')}`, { field: 'status' });
  if (detail !== null && typeof detail !== 'string')
    throw problem('ERR_VALIDATION', 'detail must be a string', { field: 'detail' });
  return { requestId: requestId.toLowerCase(), target, status: status as AckStatus, detail };
}

/** POST /v1/acks: a partner acknowledges its own task, the HTTP form of an ack event. */
export function ackRoutes(deps: { pool: pg.Pool; bodyLimitBytes: number }) {
  const router = Router();
  router.post('/', requireScope('ack'), async (req: Request, res) => {
    const ack = validateAckBody(await readJsonBody(req, deps.bodyLimitBytes));
    const principal = req.principal!;
    // An ack token speaks for one target only: another partner's task is not ours to close.
    if (ack.target !== principal.target)
      throw problem('ERR_FORBIDDEN', 'this token may only acknowledge for its own target', {
        field: 'target',
      });
    const applied = await applyAck(deps.pool, { ...ack, ackedAt: new Date() }, principal.tokenId);
    // One answer for both, so an ack token cannot probe which requests exist.
    if (applied.result === 'unknown_request' || applied.result === 'refused')
      throw problem('ERR_NOT_FOUND', 'no such erasure request with a task for this target');
    res.json({
      requestId: ack.requestId,
      target: ack.target,
      result: applied.result,
      requestStatus: applied.requestStatus,
    });
  });
  return router;
}
