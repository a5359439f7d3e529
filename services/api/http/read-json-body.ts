import type { Request } from 'express';
import { problem } from '../../shared/errors.ts';
import { hasLoneSurrogate } from '../../shared/lone-surrogates.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads the body up to `limitBytes`. Past the limit (a body sent without Content-Length,
 * chunked) it stops keeping the bytes but never destroys the request: the rest is read and
 * dropped, so the 413 reaches the client (closing a socket with unread bytes resets it,
 * and the client may lose the answer).
 * (Leaving a `for await` loop early destroys the stream, and with it req.socket, so no
 * answer could be sent at all.) A client that goes away mid-body rejects with ECONNRESET.
 */
function readLimited(req: Request, limitBytes: number): Promise<{ chunks: Buffer[]; size: number }> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limitBytes) {
        chunks.push(chunk);
        return;
      }
      done();
      req.on('error', () => {}); // the drain may still see the client reset
      req.resume();
      reject(problem('ERR_BODY_TOO_LARGE', `the body is larger than ${limitBytes} bytes`));
    };
    const onEnd = () => {
      done();
      resolve({ chunks, size });
    };
    const onError = (err: Error) => {
      done();
      reject(err);
    };
    const onClose = () => {
      if (req.complete) return;
      done();
      reject(Object.assign(new Error('the client closed the connection mid-body'), { code: 'ECONNRESET' }));
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

/**
 * Reads and parses a JSON body ourselves rather than with express.json(): invalid UTF-8
 * must be refused (body-parser silently substitutes U+FFFD, which would store a changed
 * identifier), and the size limit must stop reading early instead of buffering 10 MB.
 * A body is read as UTF-8 only when it says so or says nothing: another charset or a
 * content coding (gzip, br) would be decoded into other characters, so it is refused (415).
 */
export async function readJsonBody(req: Request, limitBytes: number): Promise<unknown> {
  const header = req.headers['content-type'] ?? '';
  const semicolon = header.indexOf(';');
  const type = (semicolon === -1 ? header : header.slice(0, semicolon)).trim().toLowerCase();
  if (type !== 'application/json' && !/^application\/[a-z0-9.+-]+\+json$/.test(type)) {
    throw problem('ERR_UNSUPPORTED_MEDIA_TYPE', 'the body must be application/json');
  }
  if (semicolon !== -1 && !charsetIsUtf8(header.slice(semicolon + 1))) {
    throw problem('ERR_UNSUPPORTED_MEDIA_TYPE', 'the body must be UTF-8 (charset=utf-8, or no charset)');
  }
  const coding = req.headers['content-encoding'];
  if (coding !== undefined && !IDENTITY.test(coding)) {
    req.res?.setHeader('Accept-Encoding', 'identity'); // RFC 9110 §15.5.16
    throw problem('ERR_UNSUPPORTED_MEDIA_TYPE', 'the body must not be compressed (no Content-Encoding)');
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limitBytes) {
    req.resume(); // drain so the connection can answer
    throw problem('ERR_BODY_TOO_LARGE', `the body is larger than ${limitBytes} bytes`);
  }
  const { chunks, size } = await readLimited(req, limitBytes);
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
  // One walk over the parsed body serves both checks below. Valid UTF-8 can still spell a
  // lone surrogate as a JSON escape ("\ud800"): not a character, and PostgreSQL refuses it
  // in jsonb; strings are looked at only when the text holds such an escape.
  const walked = walkBody(value, SURROGATE_ESCAPE.test(text));
  if (walked.loneSurrogate) {
    throw problem(
      'ERR_INVALID_UTF8',
      'the body holds a lone UTF-16 surrogate escape (\\uD800 to \\uDFFF without its pair), which is not a character',
    );
  }
  // JSON.parse keeps the last of two equal keys, so {"reason":"a","reason":"b"} would mean
  // whatever this parser picks and another reads differently. The text has at least as many
  // `"…:` as keys; when the parsed body has fewer, the text is scanned for the repeat.
  if (keyEndsAtLeast(text) > walked.keys) {
    const repeated = findDuplicateKey(text);
    if (repeated !== undefined) {
      const key = printableKey(repeated);
      throw problem('ERR_DUPLICATE_KEY', `an object in the body has the key "${key}" twice`, {
        field: key,
      });
    }
  }
  return value;
}

const SURROGATE_ESCAPE = /\\u[dD][89a-fA-F]/;
const IDENTITY = /^[ \t]*(?:identity)?[ \t]*$/i;
const QUOTE_THEN_SPACE = /"[ \t\r\n]/;
const QUOTE_SPACE_COLON = /"[ \t\r\n]+:/g;

/** `charset` parameters, if any, name UTF-8 (RFC 9110 §8.3.2: case-insensitive, may be quoted). */
function charsetIsUtf8(params: string): boolean {
  for (const param of params.split(';')) {
    const eq = param.indexOf('=');
    if (eq === -1 || param.slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    const value = param
      .slice(eq + 1)
      .trim()
      .replace(/^"(.*)"$/, '$1')
      .toLowerCase();
    if (value !== 'utf-8' && value !== 'utf8') return false;
  }
  return true;
}

/**
 * At least the number of keys in `text`: a key ends with `"`, optional whitespace and `:`
 * (an escaped quote then `:` inside a string counts too, which only costs a scan).
 * indexOf is ~3× faster than a regex here; whitespace before a colon is legal but rare, so
 * the regex runs only when a quote is followed by whitespace at all.
 */
function keyEndsAtLeast(text: string): number {
  let n = 0;
  for (let i = text.indexOf('":'); i !== -1; i = text.indexOf('":', i + 2)) n++;
  if (QUOTE_THEN_SPACE.test(text)) {
    QUOTE_SPACE_COLON.lastIndex = 0;
    while (QUOTE_SPACE_COLON.exec(text) !== null) n++;
  }
  return n;
}

/**
 * Counts the parsed body's keys, and looks for a lone surrogate in its strings when asked,
 * with a stack of its own: JSON.parse takes nesting a recursion would not.
 */
function walkBody(body: unknown, checkStrings: boolean): { keys: number; loneSurrogate: boolean } {
  let keys = 0;
  const stack: unknown[] = [body];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (hasLoneSurrogate(v)) return { keys, loneSurrogate: true };
    } else if (Array.isArray(v)) {
      for (const x of v) if (checkStrings || (typeof x === 'object' && x !== null)) stack.push(x);
    } else if (v !== null && typeof v === 'object') {
      for (const k in v) {
        keys++;
        if (checkStrings && hasLoneSurrogate(k)) return { keys, loneSurrogate: true };
        const x = (v as Record<string, unknown>)[k];
        if (checkStrings || (typeof x === 'object' && x !== null)) stack.push(x);
      }
    }
  }
  return { keys, loneSurrogate: false };
}

/**
 * The first key found twice in one object of `text` (valid JSON), decoded, or undefined.
 * Outside strings, `"` only opens a string, and a string ends at the next `"` not escaped
 * by an odd run of backslashes; between strings, braces and brackets track the objects.
 */
function findDuplicateKey(text: string): string | undefined {
  const objects: (Set<string> | null)[] = []; // null: an array
  let pos = 0;
  for (;;) {
    const open = text.indexOf('"', pos);
    for (let i = pos; i < (open === -1 ? text.length : open); i++) {
      const c = text.charCodeAt(i);
      if (c === 0x7b) objects.push(new Set());
      else if (c === 0x5b) objects.push(null);
      else if (c === 0x7d || c === 0x5d) objects.pop();
    }
    if (open === -1) return undefined;
    let close = open;
    for (;;) {
      close = text.indexOf('"', close + 1);
      let backslashes = 0;
      while (text.charCodeAt(close - 1 - backslashes) === 0x5c) backslashes++;
      if (backslashes % 2 === 0) break;
    }
    pos = close + 1;
    let next = pos;
    while (next < text.length && ' \t\r\n'.includes(text[next]!)) next++;
    const keys = objects.at(-1);
    if (text[next] === ':' && keys) {
      const raw = text.slice(open, close + 1);
      const key = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
      if (keys.has(key)) return key;
      keys.add(key);
    }
  }
}

// C0 controls, DEL and C1 controls: never legitimate in an identifier, a reason or a key.
// eslint-disable-next-line no-control-regex
export const CONTROL_CHARACTERS = /[\u0000-\u001f\u007f-\u009f]/;

/** A client's key made fit to quote in a problem: control characters as `?`, at most 64 characters. */
export function printableKey(key: string): string {
  return key.replace(new RegExp(CONTROL_CHARACTERS, 'g'), '?').slice(0, 64);
}
