/**
 * The exporter in a child process, for crash tests: with CRASH_AFTER_UPLOADS=N it kills
 * itself (SIGKILL: no shutdown, no flush, no commit) right after the Nth object is durable
 * and before its offsets are committed. Prints "ready" once consuming.
 */
import { loadExporterConfig, start } from '../../services/exporter/index.ts';
import { createLogger } from '../../services/shared/logger.ts';

const crashAfter = Number(process.env['CRASH_AFTER_UPLOADS'] ?? 0);
let uploads = 0;
const exporter = await start(
  loadExporterConfig(process.env),
  createLogger({ service: 'exporter', level: 'warn', stream: process.stderr }),
  {
    afterUpload: (key) => {
      uploads++;
      process.stdout.write(`uploaded ${key}\n`);
      if (crashAfter > 0 && uploads >= crashAfter) process.kill(process.pid, 'SIGKILL');
    },
  },
);
process.stdout.write('ready\n');
process.on('SIGTERM', () => void exporter.stop().then(() => process.exit(0)));
