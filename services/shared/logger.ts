import winston from 'winston';

/**
 * Keys whose values are personal data or secrets. Whatever the caller passes, values
 * under these keys never reach a log line: this format is the one redaction point.
 */
const REDACTED_KEYS = new Set([
  'identifiers',
  'identifier',
  'value',
  'values',
  'email',
  'phone',
  'user_id',
  'userId',
  'device_id',
  'deviceId',
  'subject',
  'body',
  'payload',
  'authorization',
  'token',
  'password',
  'secret',
]);

/**
 * Foreign error messages quote the offending input (PostgreSQL: `invalid input syntax for
 * type uuid: "..."`), which may be an identifier; quoted spans are dropped.
 */
export function scrub(message: string): string {
  return message.replace(/"[^"]*"|'[^']*'/g, '"…"');
}

function redactValue(v: unknown, depth: number): unknown {
  if (depth > 6 || v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map((x) => redactValue(x, depth + 1));
  if (v instanceof Error)
    return { name: v.name, message: scrub(v.message), code: (v as { code?: unknown }).code };
  const out: Record<string, unknown> = {};
  for (const [k, val] of Object.entries(v)) {
    out[k] = REDACTED_KEYS.has(k) ? '[redacted]' : redactValue(val, depth + 1);
  }
  return out;
}

/**
 * Keys whose string values are often a foreign error's message (`error: err.message`), or a
 * partner's free text: scrubbed like an Error's message.
 */
const MESSAGE_KEYS = new Set(['error', 'reason', 'cause', 'detail', 'lastError']);

const redact = winston.format((info) => {
  for (const key of Object.keys(info)) {
    if (REDACTED_KEYS.has(key)) info[key] = '[redacted]';
    else if (MESSAGE_KEYS.has(key) && typeof info[key] === 'string') info[key] = scrub(info[key]);
    else if (
      key === 'error' &&
      typeof info[key] === 'object' &&
      info[key] !== null &&
      'message' in info[key]
    ) {
      const e = info[key] as { message: unknown };
      info[key] = redactValue({ ...e, message: scrub(String(e.message)) }, 0);
    } else info[key] = redactValue(info[key], 0);
  }
  return info;
});

export type Logger = winston.Logger;

export interface LoggerOptions {
  /** Service name, on every line. */
  service: string;
  /** error | warn | info | debug. Default info. */
  level?: string;
  /** Where lines go; default stdout. Tests pass a stream to capture output. */
  stream?: NodeJS.WritableStream;
}

/** Structured JSON logs; services derive child loggers carrying request id, code, attempt. */
export function createLogger(opts: LoggerOptions): Logger {
  return winston.createLogger({
    level: opts.level ?? 'info',
    defaultMeta: { service: opts.service },
    format: winston.format.combine(redact(), winston.format.timestamp(), winston.format.json()),
    transports: [new winston.transports.Stream({ stream: opts.stream ?? process.stdout })],
  });
}
