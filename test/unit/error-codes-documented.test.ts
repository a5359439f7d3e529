// docs/errors.md and the code's error codes cannot drift: every problem code is documented
// with its status and title, the service errors have their own section, and the page
// mentions no code that does not exist.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { ConfigurationError, MigrationError, PROBLEM_CODES } from '../../services/shared/errors.ts';
import { JournalSealError } from '../../services/shared/journal.ts';
import {
  EventLogContractError,
  SchemaIncompatibleError,
  SchemaRegistryError,
} from '../../services/shared/event-log.ts';

const doc = readFileSync(join(import.meta.dirname, '..', '..', 'docs', 'errors.md'), 'utf8');

/** Codes raised inside the services, not answered over HTTP. */
const SERVICE_CODES = [
  new ConfigurationError([]).code,
  new MigrationError('example').code,
  new JournalSealError('example').code,
  new EventLogContractError([]).code,
  new SchemaIncompatibleError('example-value', 'BACKWARD', 'example').code,
  new SchemaRegistryError('example', false).code,
];

/** Every ERR_/WARN_ code written in services/ and packages/ (string literals, templates, comments alike). */
function sourceCodes(): Set<string> {
  const out = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts'))
        for (const m of readFileSync(p, 'utf8').matchAll(/\b(?:ERR|WARN)_[A-Z0-9_]{3,}\b/g)) out.add(m[0]);
    }
  };
  walk(join(import.meta.dirname, '..', '..', 'services'));
  walk(join(import.meta.dirname, '..', '..', 'packages', 'partner-sdk', 'src'));
  return out;
}

/** The text of the section under a `## heading`, up to the next one. */
function section(heading: string): string {
  const start = doc.indexOf(`\n## ${heading}\n`);
  assert.notEqual(start, -1, `docs/errors.md has a "## ${heading}" section`);
  const end = doc.indexOf('\n## ', start + 1);
  return doc.slice(start, end === -1 ? undefined : end);
}

/** Table rows whose first cell is a code: code → the other cells. */
function tableRows(text: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (m)
      rows.set(
        m[1]!,
        m[2]!.split('|').map((c) => c.trim()),
      );
  }
  return rows;
}

describe('docs/errors.md', () => {
  it('documents every problem code with its HTTP status and title', () => {
    const rows = tableRows(section('HTTP problem codes'));
    for (const [code, { status, title }] of Object.entries(PROBLEM_CODES)) {
      const cells = rows.get(code);
      assert.ok(cells, `${code} has a row in the HTTP problem codes table`);
      assert.equal(cells[0], String(status), `${code}'s status`);
      assert.equal(cells[1], title, `${code}'s title`);
      assert.ok(cells[2] && cells[3], `${code} says when it happens and what a client should do`);
    }
    assert.deepEqual([...rows.keys()].sort(), Object.keys(PROBLEM_CODES).sort(), 'one row per problem code');
  });

  it('documents the service errors in their own section', () => {
    assert.deepEqual(SERVICE_CODES, [
      'ERR_CONFIG',
      'ERR_MIGRATION',
      'ERR_JOURNAL_SEAL',
      'ERR_EVENT_LOG_CONTRACT',
      'ERR_SCHEMA_INCOMPATIBLE',
      'ERR_SCHEMA_REGISTRY',
    ]);
    const rows = tableRows(section('Service errors'));
    assert.deepEqual([...rows.keys()].sort(), [...SERVICE_CODES].sort());
    for (const [code, cells] of rows)
      assert.ok(
        cells.every((c) => c.length > 0),
        `${code} has every column filled`,
      );
  });

  it('documents every code the services log, and each log code once', () => {
    const logged = sourceCodes();
    const rows = tableRows(section('Log codes'));
    for (const code of logged) {
      if (code in PROBLEM_CODES || SERVICE_CODES.includes(code)) continue;
      assert.ok(
        rows.has(code),
        `${code} is used in services/ but has no row under "Log codes" in docs/errors.md`,
      );
    }
    for (const code of rows.keys())
      assert.ok(logged.has(code), `${code} is documented but no service uses it`);
  });

  it('mentions only codes that exist', () => {
    const known = new Set<string>([...Object.keys(PROBLEM_CODES), ...SERVICE_CODES, ...sourceCodes()]);
    const mentioned = new Set([...doc.matchAll(/\b(?:ERR|WARN)_[A-Z0-9_]+\b/g)].map((m) => m[0]));
    for (const code of mentioned)
      assert.ok(known.has(code), `docs/errors.md mentions ${code}, which no code defines`);
    for (const code of known) assert.ok(doc.includes(`\`${code}\``), `docs/errors.md mentions \`${code}\``);
  });
});
