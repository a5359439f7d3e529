/**
 * `npm run stack:up | stack:down | stack:status` — the local stack of real components.
 *   up     [--parts=postgres,kafka,...] [--kafka-nodes=3]   idempotent; probes every part
 *   down                                                    stops only what we started
 *   status                                                  one line per part
 * Exit 0 on success; on failure one line per failed part (part: reason (log: file)), exit 1.
 */
import { relative } from 'node:path';
import { ConfigError } from '../../services/shared/infra-config.ts';
import { loadStackConfig } from './stack-config.ts';
import { PART_NAMES, stackDown, stackStatus, stackUp } from './stack.ts';
import type { PartName } from './parts/part.ts';

// Node 20 is this project's baseline; the pinned AWS SDK supports it, so its notice about
// future releases needing Node 22 is noise in every command's output.
process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';

async function main(argv: string[]): Promise<number> {
  const [command = 'status', ...rest] = argv;
  const cfg = loadStackConfig(process.env, rest);
  const rel = (p: string) => relative(process.cwd(), p) || p;
  const progress = (line: string) =>
    process.stderr.write(`stack: ${line.replace(cfg.stackDir, rel(cfg.stackDir))}\n`);

  switch (command) {
    case 'up': {
      const partsArg = rest.find((a) => a.startsWith('--parts='))?.split('=')[1];
      const wanted = (partsArg ? partsArg.split(',') : [...PART_NAMES]) as PartName[];
      const unknown = wanted.filter((p) => !PART_NAMES.includes(p));
      if (unknown.length > 0) {
        process.stderr.write(
          `stack: unknown part(s) ${unknown.join(', ')}; parts are ${PART_NAMES.join(', ')}\n`,
        );
        return 2;
      }
      const t0 = Date.now();
      const { failures } = await stackUp(cfg, wanted, progress);
      if (failures.length > 0) {
        for (const f of failures) process.stderr.write(`stack: FAILED ${f.line(process.cwd())}\n`);
        return 1;
      }
      process.stderr.write(`stack: up in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      return 0;
    }
    case 'down':
      await stackDown(cfg, progress);
      return 0;
    case 'status': {
      for (const s of await stackStatus(cfg)) {
        const pids = s.pids.length > 0 ? ` pid ${s.pids.join(',')}` : '';
        const log = s.part.external ? '' : ` log ${rel(s.part.logFile)}`;
        process.stdout.write(
          `${s.part.name.padEnd(9)} ${s.state.padEnd(21)} ${s.part.endpoint}${pids}${log}\n`,
        );
      }
      return 0;
    }
    default:
      process.stderr.write(`stack: unknown command "${command}"; use up, down or status\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError) process.stderr.write(`stack: ${err.message}\n`);
    else if (err instanceof Error && 'line' in err) process.stderr.write(`stack: FAILED ${err.message}\n`);
    else process.stderr.write(`stack: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
