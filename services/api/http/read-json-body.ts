import type { Request } from 'express';
import { problem } from '../../shared/errors.ts';
import { hasLoneSurrogate } from '../../shared/lone-surrogates.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads and parses a JSON body ourselves rather than with express.json(): invalid UTF-8
 * must be refused (body-parser silently substitutes U+FFFD, which would store a changed
 * identifier), and the size limit must stop reading early instead of buffering 10 MB.
 */
export async function readJsonBody(req: Request, limitBytes: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
    throw problem('ERR_UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limitBytes) {
    req.resume(); // drain so the connection can answer
    throw problem('ERR_BODY_TOO_LARGE', `the body is larger than ${limitBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limitBytes) {
      req.resume();
      throw problem('ERR_BODY_TOO_LARGE', `the body is larger than ${limitBytes} bytes`);
    }
    chunks.push(chunk);
  }
  let text: string;
  try {
    text = utf8.decode(Buffer.concat(chunks, size));
  } catch {
    throw problem('ERR_INVALID_UTF8', 'the body is not valid UTF-8');
  }
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch {
    throw problem('ERR_MALFORMED_JSON', 'the body is not valid JSON');
  }
  // Valid UTF-8 can still spell a lone surrogate as a JSON escape ("\ud800"): not a
  // character, and PostgreSQL refuses it in jsonb. Only bodies with such an escape are walked.
  if (SURROGATE_ESCAPE.test(text) && bodyHasLoneSurrogate(value)) {
    throw problem(
      'ERR_INVALID_UTF8',
      'the body holds a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF without its pair), which is not a character',
    );
  }
  return value;
}

const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;

/** Walks the parsed body with a stack of its own: JSON.parse takes nesting a recursion would not. */
function bodyHasLoneSurrogate(body: unknown): boolean {
  const stack: unknown[] = [body];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (hasLoneSurrogate(v)) return true;
    } else if (Array.isArray(v)) {
      for (const x of v) stack.push(x);
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        if (hasLoneSurrogate(k)) return true;
        stack.push(x);
      }
    }
  }
  return false;
}

// C0 controls, DEL and C1 controls: never legitimate in an identifier, a reason or a key.
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;
