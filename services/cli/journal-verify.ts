/**
 * `erasure journal verify`: recomputes the journal's hash chain and names the first broken
 * link. Read-only: it seals nothing, so it can run against a live system.
 * Exit codes: 0 chain intact, 1 chain broken, 2 could not verify (connection, usage).
 */
import { createPool } from '../shared/db/create-pool.ts';
import { loadInfraConfig, type InfraConfig } from '../shared/infra-config.ts';
import { verifyJournal } from '../shared/journal.ts';

export interface CliIo {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

const PROGRESS_EVERY = 100_000;

export const JOURNAL_VERIFY_USAGE = `usage: erasure journal verify

Recomputes every sealed journal entry's hash in chain order and checks each links to the
one before. Prints one line; exit 0 intact, 1 broken, 2 could not verify.
Connects with DATABASE_URL.
`;

/** host:port/database of a postgres URL, never the user's password. */
export function describeDatabase(databaseUrl: string): string {
  const u = new URL(databaseUrl);
  return `${u.hostname}:${u.port || '5432'}${u.pathname}`;
}

function withoutPassword(message: string, databaseUrl: string): string {
  const password = decodeURIComponent(new URL(databaseUrl).password);
  return password ? message.split(password).join('***') : message;
}

export async function runJournalVerify(
  argv: string[],
  env: NodeJS.ProcessEnv,
  io: CliIo = { stdout: process.stdout, stderr: process.stderr },
): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    io.stdout.write(JOURNAL_VERIFY_USAGE);
    return 0;
  }
  if (argv.length > 0) {
    io.stderr.write(`erasure journal verify: unexpected argument ${argv[0]}\n${JOURNAL_VERIFY_USAGE}`);
    return 2;
  }
  let infra: InfraConfig;
  try {
    infra = loadInfraConfig(env);
  } catch (err) {
    io.stderr.write(`erasure journal verify: ${(err as Error).message}\n`);
    return 2;
  }

  const { databaseUrl } = infra;
  const where = describeDatabase(databaseUrl);
  // Without a logger an idle client dropped by the server is ignored; the next query reports it.
  const pool = createPool({ connectionString: databaseUrl, max: 1, timeouts: infra.databaseTimeouts });
  try {
    try {
      await pool.query('SELECT 1');
    } catch (err) {
      const msg = withoutPassword((err as Error).message, databaseUrl);
      io.stderr.write(`erasure journal verify: cannot connect to DATABASE_URL host ${where}: ${msg}\n`);
      return 2;
    }
    let reported = 0;
    const result = await verifyJournal(pool, {
      onProgress: (checked) => {
        if (Math.floor(checked / PROGRESS_EVERY) > Math.floor(reported / PROGRESS_EVERY)) {
          io.stderr.write(`erasure journal verify: ${checked} entries checked\n`);
        }
        reported = checked;
      },
    });
    if (result.ok) {
      io.stdout.write(`journal OK: ${result.checked} entries verified (${result.unsealed} not yet sealed)\n`);
      return 0;
    }
    const b = result.firstBroken;
    io.stdout.write(`journal BROKEN at chain_seq ${b?.chainSeq} (entry id ${b?.id}): ${b?.reason}\n`);
    return 1;
  } catch (err) {
    const msg = withoutPassword((err as Error).message, databaseUrl);
    io.stderr.write(`erasure journal verify: could not read the journal at ${where}: ${msg}\n`);
    return 2;
  } finally {
    await pool.end().catch(() => undefined);
  }
}
