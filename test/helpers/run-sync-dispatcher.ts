/**
 * Runs the sync dispatcher alone in this process, configured by the environment (test and
 * benchmark helper: a replica that can be killed with SIGKILL, or one of several processes).
 * Prints `ready <dispatcherId>` once it claims; SIGTERM stops it cleanly.
 */
import { Registry } from 'prom-client';
import { loadSyncDispatcherConfig, start } from '../../services/sync-dispatcher/index.ts';

const cfg = loadSyncDispatcherConfig(process.env);
const registry = new Registry();
const running = await start(cfg, undefined, { registry });
process.stdout.write(`ready ${cfg.dispatcherId}\n`);
// `metrics` on stdin: print this replica's metrics as one JSON line (the benchmark reads them).
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  if (d.includes('metrics'))
    void registry.getMetricsAsJSON().then((m) => process.stdout.write(`metrics ${JSON.stringify(m)}\n`));
});
process.on('SIGTERM', () => void running.stop().then(() => process.exit(0)));
