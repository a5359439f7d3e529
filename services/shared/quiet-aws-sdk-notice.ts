const VARIABLE = 'AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED';

/**
 * Turns off the AWS SDK's multi-line NodeVersionSupportWarning (Node 20 is this project's
 * baseline and the pinned SDK supports it: the notice about future releases is noise on
 * every start and every `erasure dataset` run). The SDK reads the variable when a client is
 * created, and only the exact value `true` counts, so an operator's `1` or `yes` is taken
 * as meant; `false` or `0` keeps the notice. For entry points only (bin/, services/main.ts).
 */
export function quietAwsSdkNotice(env: NodeJS.ProcessEnv): void {
  const v = env[VARIABLE]?.trim().toLowerCase();
  if (v === undefined || v === '' || ['1', 'true', 'yes', 'on'].includes(v)) env[VARIABLE] = 'true';
}
