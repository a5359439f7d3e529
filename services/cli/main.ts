/**
 * The `erasure` command line (bin/erasure.mjs). Subcommands are rows of COMMANDS: add one
 * by adding a row; dispatch, usage and `help` follow from the table.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runDatasetBackfill, runDatasetCompact, runDatasetSweep } from './dataset.ts';
import { type CliIo, runJournalVerify } from './journal-verify.ts';
import { collectInfraConfig } from '../shared/infra-config.ts';
import { dependencyPrefix } from '../shared/name-dependency.ts';

export interface CliCommand {
  /** The words that select it, e.g. ['journal', 'verify']. */
  words: readonly string[];
  summary: string;
  /** Gets the arguments after `words`; resolves to the process exit code. */
  run(argv: string[], env: NodeJS.ProcessEnv, io: CliIo): Promise<number>;
}

export const COMMANDS: readonly CliCommand[] = [
  {
    words: ['journal', 'verify'],
    summary: 'recompute the journal hash chain and name the first broken link',
    run: runJournalVerify,
  },
  {
    words: ['dataset', 'compact'],
    summary: 'merge a day of the Parquet dataset into few files and publish its manifest',
    run: runDatasetCompact,
  },
  {
    words: ['dataset', 'backfill'],
    summary: 'rebuild days of the Parquet dataset from the request store',
    run: runDatasetBackfill,
  },
  {
    words: ['dataset', 'sweep'],
    summary: 'delete replaced Parquet files past their grace period and write _SUCCESS',
    run: runDatasetSweep,
  },
];

const isHelp = (a: string | undefined) => a === 'help' || a === '--help' || a === '-h';

/** The usage of every command, or of those under one first word (`erasure dataset --help`). */
export function usage(group?: string): string {
  const commands = COMMANDS.filter((c) => group === undefined || c.words[0] === group);
  const extra =
    group === undefined
      ? [
          ['help', 'show this text'],
          ['--version', 'print the version'],
        ]
      : [];
  const rows = [...commands.map((c) => [c.words.join(' '), c.summary]), ...extra];
  const width = Math.max(...rows.map(([w]) => (w ?? '').length));
  return `usage: erasure ${group ?? '<command>'}${group ? ' <command>' : ''} [options]\n\ncommands:\n${rows
    .map(([w, s]) => `  ${(w ?? '').padEnd(width)}  ${s}`)
    .join('\n')}\n\n${
    group === undefined
      ? 'Each command reads DATABASE_URL and the other settings from the environment.'
      : `\`erasure ${group} <command> --help\` describes one.`
  }\n`;
}

/** package.json's version: the one npm installed. */
export function version(): string {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

function findCommand(argv: readonly string[]): CliCommand | undefined {
  return COMMANDS.find((c) => c.words.every((w, i) => argv[i] === w));
}

/** Runs one command line; resolves to the exit code (2 for usage errors). */
export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  const first = argv[0];
  if (isHelp(first)) {
    io.stdout.write(usage());
    return 0;
  }
  if (first === '--version') {
    io.stdout.write(`erasure ${version()}\n`);
    return 0;
  }
  const command = findCommand(argv);
  if (!command) {
    // A first word that names a group of commands (`erasure dataset`): that group's usage.
    const group = COMMANDS.some((c) => c.words[0] === first) ? first : undefined;
    if (group !== undefined && argv.length === 2 && isHelp(argv[1])) {
      io.stdout.write(usage(group));
      return 0;
    }
    const what =
      argv.length === 0
        ? 'no command given'
        : group !== undefined && argv.length === 1
          ? `no ${group} command given`
          : `unknown command: ${argv.join(' ')}`;
    io.stderr.write(`erasure: ${what}\n\n${usage(group)}`);
    return 2;
  }
  try {
    return await command.run(argv.slice(command.words.length), env, io);
  } catch (err) {
    // Commands report their own failures; this is the last line of defence. It names the
    // dependency that failed, and the variable pointing at it, when the error says which.
    const part = dependencyPrefix(err, collectInfraConfig(env, []));
    io.stderr.write(`erasure: ${command.words.join(' ')} failed: ${part}${(err as Error).message}\n`);
    return 1;
  }
}
