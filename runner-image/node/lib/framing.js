'use strict';
/**
 * Protocol framing as pure functions: messages <-> bytes, with the size rules of docs/protocol.md.
 *
 * No I/O here, so every rule (frame cap, UTF-8-safe chunking, the `result` fallbacks) can be
 * tested on its own.
 */

/** Longest log message the runner sends; longer lines are chopped so no frame gets huge. */
const LOG_CHUNK_BYTES = 16 * 1024;

/** An outgoing message would exceed `limits.max_frame_bytes`. */
class FrameTooLarge extends Error {
  constructor(message) {
    super(message);
    this.name = 'FrameTooLarge';
  }
}

/** An incoming line is not a JSON object with a string `type`. */
class BadFrame extends Error {
  constructor(message) {
    super(message);
    this.name = 'BadFrame';
  }
}

/** Text that survives UTF-8 encoding unchanged: lone surrogates become U+FFFD. */
function wellFormed(text) {
  const str = String(text);
  return typeof str.toWellFormed === 'function' ? str.toWellFormed() : Buffer.from(str, 'utf8').toString('utf8');
}

/** One JSON line as a Buffer; FrameTooLarge when it would exceed maxBytes. */
function encodeFrame(message, maxBytes) {
  const data = Buffer.from(JSON.stringify(message) + '\n', 'utf8');
  if (data.length > maxBytes) {
    throw new FrameTooLarge(`${message.type} frame of ${data.length} bytes exceeds ${maxBytes}`);
  }
  return data;
}

/** Parse one engine -> runner line (Buffer or string); BadFrame says what is wrong with it. */
function decodeLine(line) {
  let message;
  try {
    const text = typeof line === 'string' ? line : new TextDecoder('utf-8', { fatal: true }).decode(line);
    message = JSON.parse(text);
  } catch (err) {
    throw new BadFrame(`not a JSON line: ${err.message}`);
  }
  if (message === null || typeof message !== 'object' || Array.isArray(message)) {
    throw new BadFrame(`expected a JSON object, got ${message === null ? 'null' : Array.isArray(message) ? 'array' : typeof message}`);
  }
  if (typeof message.type !== 'string') {
    throw new BadFrame('message has no string `type`');
  }
  return message;
}

/** The largest index <= limit that does not split a UTF-8 sequence in buf. */
function utf8Cut(buf, limit) {
  if (buf.length <= limit) return buf.length;
  let cut = limit;
  while (cut > 0 && (buf[cut] & 0xc0) === 0x80) cut -= 1;
  return cut || limit;
}

/** Split a Buffer into pieces of at most maxBytes without splitting a character; empty -> [empty]. */
function utf8Chunks(buf, maxBytes) {
  if (buf.length === 0) return [buf];
  const chunks = [];
  let rest = buf;
  while (rest.length > 0) {
    const cut = utf8Cut(rest, maxBytes);
    chunks.push(rest.subarray(0, cut));
    rest = rest.subarray(cut);
  }
  return chunks;
}

function logFrame(id, level, message) {
  return { type: 'log', id: id === undefined ? null : id, level, message };
}

/**
 * An HTTP reply as the runner computed it: status, header pairs, and a text (string) or binary
 * (Buffer) body.
 */
class Reply {
  constructor(status, headers = [], body = '') {
    this.status = status;
    this.headers = headers;
    this.body = body;
  }

  bodyBytes() {
    return Buffer.isBuffer(this.body) ? this.body : Buffer.from(this.body, 'utf8');
  }
}

/** The `result` for an oversized reply: no headers, empty body, the size that did not fit. */
function tooLargeMessage(id, size) {
  return {
    type: 'result', id, status: 502, headers: [], body: '', body_encoding: 'utf-8',
    error: 'response_too_large', size,
  };
}

/**
 * The `result` line for a reply.
 *
 * Bodies over maxResponseBytes become `error: "response_too_large"`. Text whose JSON escaping would
 * overflow the frame travels base64-encoded instead; if even that does not fit (huge headers), the
 * reply is reported as too large too, with the size that did not fit.
 */
function resultFrame(id, reply, maxResponseBytes, maxFrameBytes) {
  const raw = reply.bodyBytes();
  if (raw.length > maxResponseBytes) {
    return encodeFrame(tooLargeMessage(id, raw.length), maxFrameBytes);
  }
  const headers = reply.headers.map(([name, value]) => [wellFormed(name), wellFormed(value)]);
  const base = { type: 'result', id, status: reply.status, headers, error: null };
  if (!Buffer.isBuffer(reply.body)) {
    try {
      return encodeFrame({ ...base, body: raw.toString('utf8'), body_encoding: 'utf-8' }, maxFrameBytes);
    } catch (err) {
      if (!(err instanceof FrameTooLarge)) throw err;
    }
  }
  try {
    return encodeFrame({ ...base, body: raw.toString('base64'), body_encoding: 'base64' }, maxFrameBytes);
  } catch (err) {
    if (!(err instanceof FrameTooLarge)) throw err;
    const headerBytes = headers.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    return encodeFrame(tooLargeMessage(id, raw.length + headerBytes), maxFrameBytes);
  }
}

module.exports = {
  LOG_CHUNK_BYTES,
  FrameTooLarge,
  BadFrame,
  Reply,
  wellFormed,
  encodeFrame,
  decodeLine,
  utf8Cut,
  utf8Chunks,
  logFrame,
  resultFrame,
  tooLargeMessage,
};
