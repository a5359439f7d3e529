/**
 * The tamper-evident journal: append-only, hash-chained.
 *
 * Writers append rows inside their own transactions with the chain fields NULL, so they
 * never queue behind one global lock. One sealer at a time then gives unsealed rows, in
 * id order, `chain_seq` 1, 2, 3, … and `hash = sha256(prev_hash || canonical bytes)`.
 * Verification recomputes every hash from the stored columns and names the first link
 * that does not hold. The trigger in schemas/sql/0001_request_store.sql refuses UPDATE
 * and DELETE of sealed rows; the chain catches whoever gets past it (a superuser).
 *
 * Limits of a self-contained chain: removing entries from the end, or rewriting the
 * whole chain from some point on, leaves a chain that verifies. Catching that needs the
 * head hash kept somewhere else (anchoring), which this module does not do.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { ErasureError } from './errors.ts';
import type { Logger } from './logger.ts';
import { beginKeyed } from './db/begin-keyed.ts';

export interface JournalEntryInput {
  /** The request this entry is about; null for entries about the system itself. */
  requestId: string | null;
  /** What happened, e.g. `request.received`, `task.acked`. */
  kind: string;
  /** Who did it (token owner, service name); null when not known. */
  actor: string | null;
  /** Facts about the step. Never identifier values: see appendJournal. */
  detail: Record<string, unknown>;
}

/** The sealer could not seal a batch; the sealing loop logs this code and retries. */
export class JournalSealError extends ErasureError {
  constructor(message: string) {
    super('ERR_JOURNAL_SEAL', message, 500, true);
  }
}

/** prev_hash of chain_seq 1. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/**
 * Key of the transaction-scoped advisory lock that makes the sealer a singleton across
 * processes. Any constant works as long as every sealer uses the same one; it differs
 * from the migration lock's key (727_310_001).
 */
export const JOURNAL_SEAL_LOCK_KEY = 727_310_002;

export const DEFAULT_SEAL_BATCH_SIZE = 5000;
const VERIFY_PAGE_SIZE = 10_000;

/** An entry's columns as the canonical form needs them: all text, as PostgreSQL prints them. */
export interface CanonicalEntry {
  /** bigint as decimal text. */
  id: string;
  requestId: string | null;
  kind: string;
  actor: string | null;
  /** `detail::text`: jsonb's normalised text (sorted keys, fixed spacing), never re-serialised here. */
  detailText: string;
  /** `at` as integer microseconds since the epoch, decimal text: the full precision of timestamptz. */
  atMicros: string;
  /** bigint as decimal text. */
  chainSeq: string;
}

/**
 * The bytes an entry's hash covers: the UTF-8 JSON array
 * `[id, request_id, kind, actor, detail_text, at_micros, chain_seq]`. Numbers travel as
 * decimal strings (no float rounding) and detail as the string PostgreSQL printed, so
 * the bytes depend only on the stored values. Changing this form breaks every chain.
 */
export function canonicalEntryBytes(e: CanonicalEntry): Buffer {
  return Buffer.from(
    JSON.stringify([e.id, e.requestId, e.kind, e.actor, e.detailText, e.atMicros, e.chainSeq]),
    'utf8',
  );
}

export function entryHash(prevHash: Buffer, e: CanonicalEntry): Buffer {
  return createHash('sha256').update(prevHash).update(canonicalEntryBytes(e)).digest();
}

/**
 * Appends entries in one multi-row INSERT. Pass the caller's transaction client so the
 * entries commit or roll back with the state change they record. No-op for none.
 *
 * `detail` must never contain identifier values (emails, user ids, phone numbers, …) or
 * anything derived from them that a dictionary reverses: the journal cannot be erased,
 * so whatever lands here outlives the erasure it records. This function cannot tell;
 * callers are responsible.
 */
export async function appendJournal(
  client: pg.ClientBase | pg.Pool,
  entries: readonly JournalEntryInput[],
): Promise<void> {
  if (entries.length === 0) return;
  // unnest keeps the statement one round trip and one plan whatever the batch size.
  await client.query(
    `INSERT INTO journal (request_id, kind, actor, detail)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::jsonb[])`,
    [
      entries.map((e) => e.requestId),
      entries.map((e) => e.kind),
      entries.map((e) => e.actor),
      entries.map((e) => JSON.stringify(e.detail)),
    ],
  );
}

// Seal and verify read the hashed columns through this one list, so both see the same text.
// Its aliases shadow the columns in ORDER BY (which would then sort text: '10' < '2'), so
// queries using it order by the qualified column, e.g. `journal.id`.
/** The columns the canonical form needs, of the journal row aliased `t`. */
const entryColumns = (
  t: string,
) => `${t}.id::text AS id, ${t}.request_id::text AS request_id, ${t}.kind, ${t}.actor,
  ${t}.detail::text AS detail_text, (extract(epoch FROM ${t}.at) * 1000000)::bigint::text AS at_micros`;
const ENTRY_COLUMNS = entryColumns('journal');

interface EntryRow {
  id: string;
  request_id: string | null;
  kind: string;
  actor: string | null;
  detail_text: string;
  at_micros: string;
}

function toCanonical(r: EntryRow, chainSeq: string): CanonicalEntry {
  return {
    id: r.id,
    requestId: r.request_id,
    kind: r.kind,
    actor: r.actor,
    detailText: r.detail_text,
    atMicros: r.at_micros,
    chainSeq,
  };
}

/**
 * Seals up to `batchSize` (default 5000) unsealed entries in one transaction and returns
 * how many. Returns 0 at once when another sealer holds the lock.
 */
export async function sealJournal(pool: pg.Pool, opts: { batchSize?: number } = {}): Promise<number> {
  const batchSize = opts.batchSize ?? DEFAULT_SEAL_BATCH_SIZE;
  const client = await pool.connect();
  let broken: Error | undefined;
  try {
    // READ COMMITTED on purpose: each statement below takes its snapshot after the lock is
    // held, so it sees everything the previous sealer committed before releasing it.
    await beginKeyed(client);
    // Locking query: one sealer at a time across processes, otherwise two would hand out
    // the same chain_seq. try_ (not wait): a second sealer has nothing to do, so it leaves.
    // xact-scoped so COMMIT/ROLLBACK, or a dropped connection, always releases it.
    const lock = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS locked', [
      JOURNAL_SEAL_LOCK_KEY,
    ]);
    if (!lock.rows[0]?.locked) {
      await client.query('ROLLBACK');
      return 0;
    }
    const tail = await client.query<{ chain_seq: string; hash: Buffer | null }>(
      `SELECT chain_seq::text AS chain_seq, hash FROM journal
        WHERE chain_seq IS NOT NULL ORDER BY journal.chain_seq DESC LIMIT 1`,
    );
    // Unsealed rows by id, not "id > last sealed": ids are handed out before commit, so a
    // row that commits late with a lower id is still found (and sealed after later ids).
    const { rows } = await client.query<EntryRow>(
      `SELECT ${ENTRY_COLUMNS} FROM journal WHERE chain_seq IS NULL ORDER BY journal.id LIMIT $1`,
      [batchSize],
    );
    if (rows.length === 0) {
      await client.query('ROLLBACK');
      return 0;
    }
    const last = tail.rows[0];
    if (last && !last.hash)
      throw new JournalSealError(`sealed entry chain_seq ${last.chain_seq} has no hash`);
    let seq = last ? BigInt(last.chain_seq) : 0n;
    let prev = last?.hash ?? GENESIS_HASH;
    const ids: string[] = [];
    const seqs: string[] = [];
    const prevs: Buffer[] = [];
    const hashes: Buffer[] = [];
    for (const r of rows) {
      seq += 1n;
      const hash = entryHash(prev, toCanonical(r, seq.toString()));
      ids.push(r.id);
      seqs.push(seq.toString());
      prevs.push(prev);
      hashes.push(hash);
      prev = hash;
    }
    // `chain_seq IS NULL` again: if anything else sealed a row meanwhile, the count below
    // is short and the whole batch rolls back rather than forking the chain.
    const updated = await client.query(
      `UPDATE journal AS j
          SET chain_seq = v.chain_seq, prev_hash = v.prev_hash, hash = v.hash
         FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[]) AS v(id, chain_seq, prev_hash, hash)
        WHERE j.id = v.id AND j.chain_seq IS NULL`,
      [ids, seqs, prevs, hashes],
    );
    if (updated.rowCount !== rows.length) {
      throw new JournalSealError(
        `sealed ${updated.rowCount ?? 0} of ${rows.length} entries; batch rolled back`,
      );
    }
    await client.query('COMMIT');
    return rows.length;
  } catch (err) {
    // A connection that cannot even roll back is discarded, not returned to the pool.
    await client.query('ROLLBACK').catch((e: Error) => (broken = e));
    throw err;
  } finally {
    client.release(broken);
  }
}

export interface JournalBrokenLink {
  chainSeq: number;
  id: string;
  reason: string;
}

export interface JournalVerification {
  ok: boolean;
  /** Sealed entries found intact, in chain order (those before the first broken link). */
  checked: number;
  /** Entries not sealed yet (counted after the walk), which the chain does not cover. */
  unsealed: number;
  firstBroken?: JournalBrokenLink;
}

interface SealedRow extends EntryRow {
  chain_seq: string;
  prev_hash: Buffer | null;
  hash: Buffer | null;
}

function checkLink(r: SealedRow, expectedSeq: bigint, prevHash: Buffer): string | undefined {
  if (BigInt(r.chain_seq) !== expectedSeq) return 'chain_seq gap: entry missing before this one';
  if (!r.prev_hash || !r.hash || r.hash.length !== 32) return 'chain fields missing or malformed';
  if (!r.prev_hash.equals(prevHash)) return 'prev_hash does not match the previous entry';
  if (!entryHash(r.prev_hash, toCanonical(r, r.chain_seq)).equals(r.hash)) {
    return 'hash mismatch: entry content changed';
  }
  return undefined;
}

/**
 * Walks the sealed entries in chain order, a page at a time, recomputing each hash; stops
 * at the first broken link. Seals nothing. Each page is its own statement (no long-lived
 * snapshot holding back vacuum): the chain only grows at its end, so keyset pages on
 * chain_seq see a consistent prefix. `onProgress` gets the running count after each page.
 */
export async function verifyJournal(
  pool: pg.Pool,
  opts: { onProgress?: (checked: number) => void } = {},
): Promise<JournalVerification> {
  let checked = 0;
  let expectedSeq = 1n;
  let prevHash = GENESIS_HASH;
  let after = '0';
  let firstBroken: JournalBrokenLink | undefined;
  while (!firstBroken) {
    const { rows } = await pool.query<SealedRow>(
      `SELECT chain_seq::text AS chain_seq, prev_hash, hash, ${ENTRY_COLUMNS}
         FROM journal WHERE chain_seq > $1::bigint ORDER BY journal.chain_seq LIMIT $2`,
      [after, VERIFY_PAGE_SIZE],
    );
    for (const r of rows) {
      const reason = checkLink(r, expectedSeq, prevHash);
      if (reason) {
        firstBroken = { chainSeq: Number(r.chain_seq), id: r.id, reason };
        break;
      }
      checked += 1;
      expectedSeq += 1n;
      prevHash = r.hash as Buffer;
      after = r.chain_seq;
    }
    if (!firstBroken) opts.onProgress?.(checked);
    if (rows.length < VERIFY_PAGE_SIZE) break;
  }
  const unsealed = await pool.query<{ n: string }>(
    'SELECT count(*)::text AS n FROM journal WHERE chain_seq IS NULL',
  );
  const result: JournalVerification = {
    ok: !firstBroken,
    checked,
    unsealed: Number(unsealed.rows[0]?.n ?? 0),
  };
  if (firstBroken) result.firstBroken = firstBroken;
  return result;
}

/** One of a request's journal entries as its report shows it: content and chain fields. */
export interface JournalEntryCheck {
  id: string;
  requestId: string | null;
  kind: string;
  actor: string | null;
  at: Date;
  detail: unknown;
  /** null while the entry is not sealed yet (the sealer runs every 200 ms). */
  chainSeq: number | null;
  prevHash: string | null;
  hash: string | null;
  /**
   * Sealed entries: the stored hash is the hash of the entry's stored content and
   * prev_hash, and prev_hash is the stored hash of the entry before it in the chain.
   * null for an unsealed entry. This checks the entry and its link, not the whole chain
   * (`erasure journal verify` walks that).
   */
  intact: boolean | null;
}

/**
 * The journal entries of the given requests, in append order, each checked against its
 * own hash and its predecessor's (see JournalEntryCheck.intact). One query; the
 * predecessor is found by chain_seq, so a deleted predecessor shows as not intact.
 */
export async function checkRequestEntries(
  pool: pg.Pool,
  requestIds: readonly string[],
): Promise<JournalEntryCheck[]> {
  const { rows } = await pool.query<
    Omit<SealedRow, 'chain_seq'> & {
      chain_seq: string | null;
      at: Date;
      detail: unknown;
      before_hash: Buffer | null;
    }
  >(
    `SELECT j.chain_seq::text AS chain_seq, j.prev_hash, j.hash, j.at, j.detail, ${entryColumns('j')},
            b.hash AS before_hash
       FROM journal j
       LEFT JOIN journal b ON b.chain_seq = j.chain_seq - 1
      WHERE j.request_id = ANY ($1::uuid[])
      ORDER BY j.id`,
    [requestIds],
  );
  return rows.map((r) => {
    let intact: boolean | null = null;
    if (r.chain_seq !== null) {
      const prevExpected = r.chain_seq === '1' ? GENESIS_HASH : r.before_hash;
      const sealed = { ...r, chain_seq: r.chain_seq };
      intact = !!prevExpected && checkLink(sealed, BigInt(r.chain_seq), prevExpected) === undefined;
    }
    return {
      id: r.id,
      requestId: r.request_id,
      kind: r.kind,
      actor: r.actor,
      at: r.at,
      detail: r.detail,
      chainSeq: r.chain_seq === null ? null : Number(r.chain_seq),
      prevHash: r.prev_hash?.toString('hex') ?? null,
      hash: r.hash?.toString('hex') ?? null,
      intact,
    };
  });
}

export interface JournalSealerOptions {
  pool: pg.Pool;
  logger: Logger;
  /** Pause between batches when the last one was not full, in ms. Default 200. */
  intervalMs?: number;
  /** Entries per sealing transaction. Default 5000. */
  batchSize?: number;
  /** Longest pause after repeated failures, in ms. Default 10000. */
  maxBackoffMs?: number;
}

/**
 * Runs sealJournal in the background until stopped. Full batches are followed at once by
 * the next (a backlog drains fast); otherwise it waits `intervalMs`. Failures never escape:
 * each is logged with code ERR_JOURNAL_SEAL and retried after a doubling pause. Safe to run
 * in every process: the advisory lock leaves all but one idle.
 */
export function startJournalSealer(opts: JournalSealerOptions): { stop(): Promise<void> } {
  const { pool, intervalMs = 200, batchSize = DEFAULT_SEAL_BATCH_SIZE, maxBackoffMs = 10_000 } = opts;
  const logger = opts.logger.child({ component: 'journal-sealer' });
  let stopping = false;
  let timer: NodeJS.Timeout | undefined;
  let wake: (() => void) | undefined;
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
    });

  const loop = async () => {
    let failures = 0;
    while (!stopping) {
      let delayMs = intervalMs;
      try {
        const sealed = await sealJournal(pool, { batchSize });
        failures = 0;
        if (sealed > 0) logger.debug('journal entries sealed', { sealed });
        if (sealed === batchSize) delayMs = 0;
      } catch (err) {
        failures += 1;
        delayMs = Math.min(maxBackoffMs, intervalMs * 2 ** failures);
        // Message and code (SQLSTATE for pg) only: a pg error's `detail` can quote row values.
        logger.error('journal sealing failed', {
          code: 'ERR_JOURNAL_SEAL',
          attempt: failures,
          errorCode: (err as { code?: unknown }).code,
          error: err instanceof Error ? err.message : String(err),
          retryInMs: delayMs,
        });
      }
      if (!stopping) await pause(delayMs);
    }
  };
  const done = loop();

  return {
    async stop() {
      stopping = true;
      clearTimeout(timer);
      wake?.();
      await done;
    },
  };
}
