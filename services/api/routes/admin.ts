import { Router, type Request } from 'express';
import type pg from 'pg';
import { problem } from '../../shared/errors.ts';
import { checkCustomPattern } from '../../shared/identifiers.ts';
import { requireScope } from '../auth/authenticate.ts';
import { isIsoDateTime } from '../intake/validate-request.ts';
import { SCOPES, type Scope, type TokenStore } from '../auth/token-store.ts';
import { CONTROL_CHARACTERS, readJsonBody } from '../http/read-json-body.ts';

function objectBody(body: unknown, allowed: string[]): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw problem('ERR_VALIDATION', 'the body must be a JSON object');
  }
  const extra = Object.keys(body).find((k) => !allowed.includes(k));
  if (extra)
    throw problem('ERR_UNKNOWN_FIELD', `unknown field "${extra.slice(0, 64)}"`, {
      field: extra.slice(0, 64),
    });
  for (const [k, v] of Object.entries(body)) {
    if (typeof v === 'string' && CONTROL_CHARACTERS.test(v)) {
      throw problem('ERR_CONTROL_CHARACTERS', `${k} contains control characters`, { field: k });
    }
  }
  return body as Record<string, unknown>;
}

/** POST /v1/tokens and /v1/identifier-types: admin-only registries. */
export function adminRoutes(deps: {
  pool: pg.Pool;
  tokens: TokenStore;
  bodyLimitBytes: number;
  onTypesChanged: () => void;
}) {
  const tokens = Router();
  tokens.post('/', requireScope('admin'), async (req: Request, res) => {
    const b = objectBody(await readJsonBody(req, deps.bodyLimitBytes), [
      'scopes',
      'target',
      'owner',
      'description',
      'expiresAt',
    ]);
    const scopes = b['scopes'];
    if (
      !Array.isArray(scopes) ||
      scopes.length === 0 ||
      !scopes.every((s) => (SCOPES as readonly unknown[]).includes(s))
    ) {
      throw problem('ERR_VALIDATION', `scopes must be a non-empty array of ${SCOPES.join(', ')}`, {
        field: 'scopes',
      });
    }
    const unique = [...new Set(scopes as Scope[])];
    const target = b['target'] ?? null;
    if (unique.includes('ack')) {
      if (unique.length !== 1)
        throw problem('ERR_VALIDATION', 'an ack token carries only the ack scope', { field: 'scopes' });
      if (typeof target !== 'string')
        throw problem('ERR_VALIDATION', 'an ack token names its target', { field: 'target' });
      const t = await deps.pool.query('SELECT 1 FROM targets WHERE name = $1', [target]);
      if (!t.rowCount) throw problem('ERR_VALIDATION', 'target does not exist', { field: 'target' });
    } else if (target !== null) {
      throw problem('ERR_VALIDATION', 'target is only for ack tokens', { field: 'target' });
    }
    const owner = b['owner'] ?? req.principal!.owner;
    if (typeof owner !== 'string' || !/^[A-Za-z0-9._-]{1,100}$/.test(owner)) {
      throw problem('ERR_VALIDATION', 'owner must be 1 to 100 of A-Z a-z 0-9 . _ -', { field: 'owner' });
    }
    const description = b['description'];
    if (description !== undefined && (typeof description !== 'string' || description.length > 200)) {
      throw problem('ERR_VALIDATION', 'description must be a string of at most 200 characters', {
        field: 'description',
      });
    }
    const expiresRaw = b['expiresAt'];
    let expiresAt: Date | undefined;
    if (expiresRaw !== undefined) {
      if (!isIsoDateTime(expiresRaw) || Date.parse(expiresRaw) <= Date.now()) {
        throw problem('ERR_VALIDATION', 'expiresAt must be a future ISO-8601 date-time', {
          field: 'expiresAt',
        });
      }
      expiresAt = new Date(expiresRaw);
    }
    const minted = await deps.tokens.mint({
      owner,
      scopes: unique,
      target: target as string | null,
      description: description as string | undefined,
      expiresAt,
    });
    await deps.pool.query(`INSERT INTO journal (kind, actor, detail) VALUES ('token.minted', $1, $2)`, [
      req.principal!.tokenId,
      { tokenId: minted.id, owner, scopes: unique, target },
    ]);
    res.status(201).json({
      id: minted.id,
      token: minted.token,
      owner,
      scopes: unique,
      target,
      expiresAt: expiresAt ?? null,
    });
  });

  const types = Router();
  types.get('/', requireScope('read'), async (_req, res) => {
    const { rows } = await deps.pool.query(
      'SELECT name, builtin, pattern, max_length AS "maxLength", lowercase FROM identifier_types ORDER BY name',
    );
    res.json({ items: rows });
  });
  types.post('/', requireScope('admin'), async (req, res) => {
    const b = objectBody(await readJsonBody(req, deps.bodyLimitBytes), [
      'name',
      'pattern',
      'maxLength',
      'lowercase',
    ]);
    const name = b['name'];
    if (typeof name !== 'string' || !/^[a-z][a-z0-9_]{1,39}$/.test(name)) {
      throw problem('ERR_VALIDATION', 'name must match ^[a-z][a-z0-9_]{1,39}$', { field: 'name' });
    }
    const pattern = b['pattern'] ?? null;
    if (pattern !== null) {
      const why = typeof pattern === 'string' ? checkCustomPattern(pattern) : 'pattern must be a string';
      if (why) throw problem('ERR_VALIDATION', why, { field: 'pattern' });
    }
    const maxLength = b['maxLength'] ?? 256;
    if (!Number.isInteger(maxLength) || (maxLength as number) < 1 || (maxLength as number) > 1024) {
      throw problem('ERR_VALIDATION', 'maxLength must be a whole number from 1 to 1024', {
        field: 'maxLength',
      });
    }
    const lowercase = b['lowercase'] ?? false;
    if (typeof lowercase !== 'boolean')
      throw problem('ERR_VALIDATION', 'lowercase must be a boolean', { field: 'lowercase' });
    const ins = await deps.pool.query(
      `INSERT INTO identifier_types (name, pattern, max_length, lowercase) VALUES ($1, $2, $3, $4)
       ON CONFLICT (name) DO NOTHING`,
      [name, pattern, maxLength, lowercase],
    );
    if (!ins.rowCount)
      throw problem('ERR_CONFLICT', `identifier type "${name}" already exists`, { field: 'name' });
    await deps.pool.query(
      `INSERT INTO journal (kind, actor, detail) VALUES ('identifier_type.created', $1, $2)`,
      [req.principal!.tokenId, { name, maxLength, lowercase, hasPattern: pattern !== null }],
    );
    deps.onTypesChanged();
    res.status(201).json({ name, builtin: false, pattern, maxLength, lowercase });
  });

  return { tokens, types };
}
