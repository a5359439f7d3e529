/**
 * The `erasure` command line (bin/erasure.mjs). Subcommands are rows of COMMANDS: add one
 * by adding a row; dispatch, usage and `help` follow from the table.
 */
import { runDatasetBackfill, runDatasetCompact, runDatasetSweep } from './dataset.ts';
import { type CliIo, runJournalVerify } from './journal-verify.ts';

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

export function usage(): string {
  const width = Math.max(...COMMANDS.map((c) => c.words.join(' ').length), 'help'.length);
  const rows = [...COMMANDS.map((c) => [c.words.join(' '), c.summary]), ['help', 'show this text']];
  return `usage: erasure <command> [options]\n\ncommands:\n${rows
    .map(([w, s]) => `  ${(w ?? '').padEnd(width)}  ${s}`)
    .join('\n')}\n\nEach command reads DATABASE_URL and the other settings from the environment.\n`;
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
  if (first === 'help' || first === '--help' || first === '-h') {
    io.stdout.write(usage());
    return 0;
  }
  const command = findCommand(argv);
  if (!command) {
    const what = argv.length > 0 ? `unknown command: ${argv.join(' ')}` : 'no command given';
    io.stderr.write(`erasure: ${what}\n\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(argv.slice(command.words.length), env, io);
  } catch (err) {
    // Commands report their own failures; this is the last line of defence.
    io.stderr.write(`erasure: ${command.words.join(' ')} failed: ${(err as Error).message}\n`);
    return 1;
  }
}
