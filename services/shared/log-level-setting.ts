/** The levels services log at (createLogger), quietest first. */
export const LOG_LEVELS = Object.freeze(['error', 'warn', 'info', 'debug'] as const);
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * LOG_LEVEL for a service's config loader: unset or blank is `info`; anything but the four
 * levels is added to `problems`, so it is reported with the loader's other problems. Winston
 * takes an unknown level without complaint and then prints nothing at all, which is how a
 * typo would otherwise silence a service.
 */
export function logLevelSetting(
  env: Readonly<Record<string, string | undefined>>,
  problems: string[],
): LogLevel {
  const raw = env['LOG_LEVEL']?.trim() || 'info';
  if ((LOG_LEVELS as readonly string[]).includes(raw)) return raw as LogLevel;
  problems.push(`LOG_LEVEL must be ${LOG_LEVELS.slice(0, -1).join(', ')} or ${LOG_LEVELS.at(-1)}`);
  return 'info';
}
