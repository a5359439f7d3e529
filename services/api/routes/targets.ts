import { Router } from 'express';
import type pg from 'pg';
import { problem } from '../../shared/errors.ts';
import {
  validateTargetCreate,
  validateTargetPatch,
  type TargetInput,
  type TargetResult,
} from '../../shared/validate-target.ts';
import { requireScope } from '../auth/authenticate.ts';
import { readJsonBody } from '../http/read-json-body.ts';

interface TargetRow {
  name: string;
  kind: 'sync_http' | 'async_event';
  identifier_types: string[];
  ack_sla_seconds: number;
  after_targets: string[];
  http: TargetInput['http'];
  verify_url_template: string | null;
  paused: boolean;
  owner: string | null;
}

function fromRow(r: TargetRow): TargetInput {
  return {
    name: r.name,
    kind: r.kind,
    identifierTypes: r.identifier_types,
    ackSlaSeconds: r.ack_sla_seconds,
    after: r.after_targets,
    http: r.http,
    verifyUrlTemplate: r.verify_url_template,
    paused: r.paused,
    owner: r.owner,
  };
}

/** Header values may be credentials: they are write-only through the API. */
function present(t: TargetInput) {
  return {
    ...t,
    http: t.http && {
      ...t.http,
      headers: Object.fromEntries(Object.keys(t.http.headers).map((k) => [k, '[redacted]'])),
    },
    links: { self: `/v1/targets/${t.name}` },
  };
}

function rejectProblems(res: TargetResult): TargetInput {
  if (res.ok) return res.value;
  const first = res.problems[0]!;
  throw problem(first.code, first.message, {
    field: first.field,
    errors: res.problems.map((p) => ({ code: p.code, field: p.field, detail: p.message })),
  });
}

/** The `after` lists must not form a cycle: a cycle would hold those tasks forever. */
function checkNoCycle(all: Map<string, string[]>): void {
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (n: string, path: string[]) => {
    if (state.get(n) === 'done') return;
    if (state.get(n) === 'visiting') {
      throw problem('ERR_INVALID_TARGET', `"after" forms a cycle: ${[...path, n].join(' -> ')}`, {
        field: 'after',
      });
    }
    state.set(n, 'visiting');
    for (const m of all.get(n) ?? []) visit(m, [...path, n]);
    state.set(n, 'done');
  };
  for (const n of all.keys()) visit(n, []);
}

/**
 * Key of the transaction-scoped advisory lock that serialises target writes (creates and
 * patches are rare admin calls). Without it two concurrent PATCHes each validated against
 * what the other had not written yet: `a after b` and `b after a` were both accepted, a
 * cycle that holds tasks forever, and of two patches of one target the later write
 * silently dropped the earlier one's change. Migrations use 727_310_001, the journal
 * sealer 727_310_002.
 */
const TARGETS_WRITE_LOCK_KEY = 727_310_003;

export function targetRoutes(deps: {
  pool: pg.Pool;
  bodyLimitBytes: number;
  actorOf: (req: unknown) => string;
}) {
  const { pool } = deps;
  const router = Router();

  async function context(client: pg.ClientBase) {
    const types = await client.query<{ name: string }>('SELECT name FROM identifier_types');
    const targets = await client.query<{ name: string; after_targets: string[] }>(
      'SELECT name, after_targets FROM targets',
    );
    return {
      identifierTypes: new Set(types.rows.map((r) => r.name)),
      targets: new Set(targets.rows.map((r) => r.name)),
      graph: new Map(targets.rows.map((r) => [r.name, r.after_targets])),
    };
  }

  /**
   * Reads, validates (`build`, then the `after` cycle check) and writes a target in one
   * transaction under TARGETS_WRITE_LOCK_KEY, so each write is checked against every write
   * before it.
   */
  async function writeTarget(
    build: (client: pg.ClientBase, ctx: Awaited<ReturnType<typeof context>>) => Promise<TargetInput>,
    create: boolean,
    actor: string,
  ) {
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('SELECT pg_advisory_xact_lock($1)', [TARGETS_WRITE_LOCK_KEY]);
      const ctx = await context(client);
      const t = await build(client, ctx);
      checkNoCycle(new Map([...ctx.graph, [t.name, t.after]]));
      await save(client, t, create, actor);
      await client.query('COMMIT');
      return t;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
  }

  async function save(client: pg.ClientBase, t: TargetInput, create: boolean, actor: string) {
    const params = [
      t.name,
      t.kind,
      t.identifierTypes,
      t.ackSlaSeconds,
      t.after,
      t.http === null ? null : JSON.stringify(t.http),
      t.verifyUrlTemplate,
      t.paused,
      t.owner,
    ];
    if (create) {
      const ins = await client.query(
        `INSERT INTO targets (name, kind, identifier_types, ack_sla_seconds, after_targets, http, verify_url_template, paused, owner)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
         ON CONFLICT (name) DO NOTHING`,
        params,
      );
      if (ins.rowCount === 0)
        throw problem('ERR_CONFLICT', `target "${t.name}" already exists`, { field: 'name' });
    } else {
      await client.query(
        `UPDATE targets
            SET kind = $2, identifier_types = $3, ack_sla_seconds = $4, after_targets = $5, http = $6,
                verify_url_template = $7, paused = $8, owner = $9, updated_at = now()
          WHERE name = $1`,
        params,
      );
    }
    await client.query(`INSERT INTO journal (kind, actor, detail) VALUES ($1, $2, $3)`, [
      create ? 'target.created' : 'target.updated',
      actor,
      {
        target: t.name,
        kind: t.kind,
        identifierTypes: t.identifierTypes,
        paused: t.paused,
        after: t.after,
      },
    ]);
  }

  router.get('/', requireScope('admin'), async (_req, res) => {
    const { rows } = await pool.query<TargetRow>('SELECT * FROM targets ORDER BY name');
    res.json({ items: rows.map((r) => present(fromRow(r))) });
  });

  router.get('/:name', requireScope('admin'), async (req, res) => {
    const { rows } = await pool.query<TargetRow>('SELECT * FROM targets WHERE name = $1', [
      req.params['name'],
    ]);
    if (!rows[0]) throw problem('ERR_NOT_FOUND', 'no such target');
    res.json(present(fromRow(rows[0])));
  });

  router.post('/', requireScope('admin'), async (req, res) => {
    const body = await readJsonBody(req, deps.bodyLimitBytes);
    const t = await writeTarget(
      async (_client, ctx) => rejectProblems(validateTargetCreate(body, ctx)),
      true,
      deps.actorOf(req),
    );
    res.status(201).location(`/v1/targets/${t.name}`).json(present(t));
  });

  router.patch('/:name', requireScope('admin'), async (req, res) => {
    const body = await readJsonBody(req, deps.bodyLimitBytes);
    const t = await writeTarget(
      async (client, ctx) => {
        const { rows } = await client.query<TargetRow>('SELECT * FROM targets WHERE name = $1', [
          req.params['name'],
        ]);
        if (!rows[0]) throw problem('ERR_NOT_FOUND', 'no such target');
        return rejectProblems(validateTargetPatch(fromRow(rows[0]), body, ctx));
      },
      false,
      deps.actorOf(req),
    );
    res.json(present(t));
  });

  return router;
}
