/**
 * The write floor of the batch endpoint: PostgreSQL alone writing, by COPY (its fastest
 * bulk path), the rows each accepted request needs, with nothing in front of it: no HTTP,
 * no JSON parsing, no validation, no HMAC, no planning join, no conflict handling. What the
 * accept writes per subject (issue 3: "the request, one task per target ..., a journal
 * entry, and an outbox row") sets how many subjects a second this machine's PostgreSQL can
 * take at all; no intake implementation that writes those rows can go faster.
 *
 * Two shapes: `accept` writes what the accept statement writes (the request, one task per
 * target, a journal entry, the outbox row); `lean` only the request and its outbox row (a
 * write model with tasks made at dispatch and one journal entry per batch), to show what
 * changing the model could buy at most.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { REQUESTED_TOPIC } from '../../services/api/intake/insert-requests.ts';
import { PRIORITY_RANK, REASON_POLICY } from '../../services/shared/reasons.ts';

export type FloorShape = 'accept' | 'lean';

export interface FloorTarget {
  readonly name: string;
  readonly kind: 'async_event' | 'sync_http';
}

export interface FloorBatchSpec {
  readonly shape: FloorShape;
  readonly subjects: number;
  readonly owner: string;
  readonly actor: string;
  readonly targets: readonly FloorTarget[];
  /** Makes idempotency keys and identifier values unique across batches and runs. */
  readonly run: string;
}

/** One COPY: the table and columns, and the rows in COPY's text format. */
export interface CopyPart {
  readonly table: string;
  readonly columns: readonly string[];
  readonly text: string;
  readonly rows: number;
}

const REASON = 'gdpr_art17';
const PRIORITY = REASON_POLICY[REASON].defaultPriority;

/** A bytea in COPY's text format: `\x` and hex, the backslash itself escaped for COPY. */
const bytea = (b: Buffer) => `\\\\x${b.toString('hex')}`;

/**
 * The rows of one batch of `subjects` requests, as the accept statement would write them
 * for one user_id each. Values hold no tab, newline or backslash (besides bytea's, escaped),
 * so they go into COPY's text format as they are.
 */
export function floorBatch(spec: FloorBatchSpec): CopyPart[] {
  const now = new Date();
  const at = now.toISOString();
  const deadline = new Date(now.getTime() + 31 * 86_400_000).toISOString();
  const asyncTargets = JSON.stringify(
    spec.targets
      .filter((t) => t.kind === 'async_event')
      .map((t) => t.name)
      .sort(),
  );
  const allTargets = JSON.stringify(spec.targets.map((t) => t.name).sort());
  const requests: string[] = [];
  const tasks: string[] = [];
  const journal: string[] = [];
  const outbox: string[] = [];
  for (let i = 0; i < spec.subjects; i++) {
    const id = randomUUID();
    const subject = randomBytes(32);
    const identifiers = `[{"type":"user_id","value":"floor-${spec.run}-${i}"}]`;
    requests.push(
      [
        id,
        spec.owner,
        `floor-${spec.run}-${i}`,
        bytea(randomBytes(32)),
        bytea(subject),
        identifiers,
        REASON,
        PRIORITY,
        'scheduled',
        deadline,
      ].join('\t'),
    );
    outbox.push(
      [
        REQUESTED_TOPIC,
        subject.toString('hex'),
        `{"eventId":"${randomUUID()}","requestId":"${id}","identifiers":${identifiers},"reason":"${REASON}",` +
          `"requestedAt":"${at}","priority":"${PRIORITY}","notBefore":null,"deadline":"${deadline}",` +
          `"targets":${asyncTargets}}`,
        id,
        at,
      ].join('\t'),
    );
    if (spec.shape === 'lean') continue;
    for (const t of spec.targets) tasks.push([id, t.name, PRIORITY_RANK[PRIORITY], at].join('\t'));
    journal.push(
      [
        id,
        'request.accepted',
        spec.actor,
        `{"reason":"${REASON}","priority":"${PRIORITY}","identifierTypes":["user_id"],"notBefore":null,"targets":${allTargets}}`,
      ].join('\t'),
    );
  }
  const part = (table: string, columns: string[], lines: string[]): CopyPart => ({
    table,
    columns,
    text: lines.length > 0 ? lines.join('\n') + '\n' : '',
    rows: lines.length,
  });
  return [
    part(
      'erasure_requests',
      [
        'id',
        'owner',
        'idempotency_key',
        'body_sha256',
        'subject_hash',
        'identifiers',
        'reason',
        'priority',
        'status',
        'deadline',
      ],
      requests,
    ),
    part('erasure_tasks', ['request_id', 'target', 'priority', 'next_attempt_at'], tasks),
    part('journal', ['request_id', 'kind', 'actor', 'detail'], journal),
    part('outbox', ['topic', 'event_key', 'payload', 'request_id', 'available_at'], outbox),
  ].filter((p) => p.rows > 0);
}

/** Writes one batch in one transaction, a COPY per table. */
export async function copyBatch(client: pg.PoolClient, parts: readonly CopyPart[]): Promise<void> {
  await client.query('BEGIN');
  try {
    for (const p of parts) {
      const sql = `COPY ${p.table} (${p.columns.join(', ')}) FROM STDIN`;
      await pipeline(Readable.from([p.text]), client.query(copyFrom(sql)));
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

export interface FloorResult {
  subjects: number;
  durationS: number;
}

/**
 * `connections` writers, each copying batches of `subjects` in a loop until `seconds` have
 * passed; a batch started before the deadline is finished and counted.
 */
export async function runCopyFloor(
  pool: pg.Pool,
  spec: Omit<FloorBatchSpec, 'run'>,
  opts: { connections: number; seconds: number },
): Promise<FloorResult> {
  const t0 = performance.now();
  const deadline = t0 + opts.seconds * 1000;
  let subjects = 0;
  let batchNo = 0;
  const writer = async (w: number) => {
    const client = await pool.connect();
    try {
      while (performance.now() < deadline) {
        await copyBatch(client, floorBatch({ ...spec, run: `${t0.toFixed(0)}-${w}-${batchNo++}` }));
        subjects += spec.subjects;
      }
    } finally {
      client.release();
    }
  };
  await Promise.all(Array.from({ length: opts.connections }, (_, w) => writer(w)));
  return { subjects, durationS: (performance.now() - t0) / 1000 };
}
