// The `erasure` command line's argument handling: every mistake is a usage error (exit 2)
// naming the option, before any connection is made; nothing is read loosely.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { parseFlags } from '../../services/cli/dataset.ts';
import { runCli } from '../../services/cli/main.ts';
import { isDate } from '../../services/shared/dataset/object-keys.ts';

/** Runs the CLI; nothing here reaches a server (usage errors come first). */
async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = { stdout: new PassThrough(), stderr: new PassThrough() };
  let stdout = '';
  let stderr = '';
  io.stdout.on('data', (d) => (stdout += d));
  io.stderr.on('data', (d) => (stderr += d));
  // Unreachable infrastructure: a usage error must come before any connection.
  const env = { DATABASE_URL: 'postgres://x:y@127.0.0.1:1/z', KAFKA_BROKERS: '127.0.0.1:1' };
  const code = await runCli(argv, env, io);
  return { code, stdout, stderr };
}

const firstLine = (s: string) => s.split('\n')[0]!;

describe('parseFlags', () => {
  const spec = { values: ['date', 'grace-ms'], switches: ['force'] };
  it('reads --name value, --name=value and bare switches', () => {
    assert.deepEqual(
      [...parseFlags(['--date', '2024-01-02', '--grace-ms=5', '--force'], spec)],
      [
        ['date', '2024-01-02'],
        ['grace-ms', '5'],
        ['force', true],
      ],
    );
  });
  for (const [argv, message] of [
    [['--dtae', '2024-01-02'], /unknown option --dtae/],
    [['--force=no'], /--force takes no value/],
    [['--force=true'], /--force takes no value/],
    [['--date'], /--date needs a value/],
    [['--date', '--force'], /--date needs a value/],
    [['--date='], /--date needs a value/],
    [['--date', 'a', '--date', 'b'], /--date is given twice/],
    [['2024-01-02'], /unexpected argument 2024-01-02/],
  ] as const)
    it(`refuses ${argv.join(' ')}`, () => {
      assert.throws(() => parseFlags(argv, spec), message);
    });
});

describe('isDate', () => {
  it('is false, without throwing, for days that do not exist', () => {
    for (const d of ['2024-02-30', '2024-02-32', '2024-13-01', '2023-02-29', '2024-00-10', '2024-1-01'])
      assert.equal(isDate(d), false, d);
    assert.equal(isDate('2024-02-29'), true);
  });
});

describe('erasure dataset: usage errors, exit 2, naming the option', () => {
  for (const [argv, message] of [
    [['dataset', 'compact', '--date', '2024-02-30'], /--date 2024-02-30 is not a date/],
    [['dataset', 'compact', '--date', '2024-02-32', '--force'], /--date 2024-02-32 is not a date/],
    [['dataset', 'compact', '--date=2024-13-01'], /--date 2024-13-01 is not a date/],
    [
      ['dataset', 'backfill', '--from', '2024-02-30', '--to', '2024-03-01'],
      /--from 2024-02-30 is not a date/,
    ],
    [['dataset', 'sweep', '--from', '2024-02-01', '--to', '2024-13-01'], /--to 2024-13-01 is not a date/],
    [
      ['dataset', 'compact', '--date', '2024-01-01', '--grace-ms', 'abc'],
      /--grace-ms must be a whole number/,
    ],
    [
      ['dataset', 'backfill', '--from', '2024-01-01', '--to', '2024-01-01', '--grace-ms', '-5'],
      /--grace-ms must be a whole number/,
    ],
    [
      ['dataset', 'backfill', '--from', '2024-01-01', '--to', '2024-01-01', '--grace-ms', '1e3'],
      /--grace-ms must be/,
    ],
    [
      ['dataset', 'compact', '--date', '2024-01-01', '--sweep-days', '400'],
      /--sweep-days must be a whole number from 0 to 366/,
    ],
    [['dataset', 'compact', '--date', '2024-01-01', '--force=no'], /--force takes no value/],
    [['dataset', 'compact', '--date', '2024-01-01', '--froce'], /unknown option --froce/],
    [
      ['dataset', 'backfill', '--from', '2024-01-01', '--to', '2024-01-01', '--allow-fewer=yes'],
      /--allow-fewer takes no value/,
    ],
    [['dataset', 'sweep', '--date', '2024-01-01', '--grace-ms', '5'], /unknown option --grace-ms/],
    [
      ['dataset', 'sweep', '--date', '2024-01-01', '--to', '2024-01-05'],
      /--date cannot be combined with --from or --to/,
    ],
    [
      ['dataset', 'sweep', '--from', '2024-01-05', '--to', '2024-01-01'],
      /--from 2024-01-05 is after --to 2024-01-01/,
    ],
    [['dataset', 'backfill', '--from', '2024-01-05'], /--from and --to \(YYYY-MM-DD\) are required/],
    [['dataset', 'compact'], /--date YYYY-MM-DD is required/],
  ] as const)
    it(argv.slice(1).join(' '), async () => {
      const r = await cli(...argv);
      assert.equal(r.code, 2, r.stderr);
      assert.match(firstLine(r.stderr), message);
      assert.match(r.stderr, /\nusage: erasure dataset /);
    });
});

describe('erasure: help and version', () => {
  for (const group of ['dataset', 'journal'])
    it(`erasure ${group} --help prints the ${group} commands, exit 0`, async () => {
      for (const help of ['--help', '-h', 'help']) {
        const r = await cli(group, help);
        assert.equal(r.code, 0, r.stderr);
        assert.match(r.stdout, new RegExp(`^usage: erasure ${group} <command>`));
        assert.match(r.stdout, new RegExp(`  ${group} (verify|compact)`));
      }
    });

  it('erasure dataset with no command, or an unknown one: the dataset usage, exit 2', async () => {
    const none = await cli('dataset');
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no dataset command given[\s\S]*dataset backfill/);
    const unknown = await cli('dataset', 'compcat');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command: dataset compcat/);
  });

  it('erasure dataset backfill --help documents --allow-fewer', async () => {
    const r = await cli('dataset', 'backfill', '--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /\[--allow-fewer\]/);
  });

  it('erasure --version prints package.json version', async () => {
    const { version } = JSON.parse(
      readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8'),
    ) as { version: string };
    const r = await cli('--version');
    assert.equal(r.code, 0);
    assert.equal(r.stdout, `erasure ${version}\n`);
  });
});
