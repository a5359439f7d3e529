import type pg from 'pg';
import type { TargetHttp } from '../shared/validate-target.ts';

export interface SyncTarget {
  readonly name: string;
  readonly http: TargetHttp;
  readonly paused: boolean;
}

const LOAD_SYNC_TARGETS = `
SELECT name, http, paused FROM targets WHERE kind = 'sync_http' ORDER BY name`;

/** Every sync_http target with its call settings (as validate-target.ts stored them). */
export async function loadSyncTargets(pool: pg.Pool): Promise<SyncTarget[]> {
  const { rows } = await pool.query<{ name: string; http: TargetHttp; paused: boolean }>(LOAD_SYNC_TARGETS);
  return rows.map((r) => ({ name: r.name, http: r.http, paused: r.paused }));
}
