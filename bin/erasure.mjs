#!/usr/bin/env node
// The `erasure` CLI. Sources are TypeScript, run through tsx's loader (no build step).
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../services/cli/main.ts');
// exitCode, not exit(): lets stdout drain before the process ends.
process.exitCode = await runCli(process.argv.slice(2), process.env);
