#!/usr/bin/env node
// The `erasure` CLI. Sources are TypeScript, run through tsx's loader (no build step).
import { register } from 'tsx/esm/api';

register();
// Before any AWS SDK client exists: its Node-version notice is noise on every run.
const { quietAwsSdkNotice } = await import('../services/shared/quiet-aws-sdk-notice.ts');
quietAwsSdkNotice(process.env);
const { runCli } = await import('../services/cli/main.ts');
// exitCode, not exit(): lets stdout drain before the process ends.
process.exitCode = await runCli(process.argv.slice(2), process.env);
