'use strict';
/**
 * Protocol framing as pure functions: messages <-> bytes, with the size rules of docs/protocol.md.
 *
 * No I/O here, so every rule (frame cap, UTF-8-safe chunking, the `result` fallbacks) can be
 * tested on its own.
 */

const { isUtf8 } = require('buffer');

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
    if (typeof line !== 'string' && !isUtf8(line)) throw new TypeError('the line is not valid UTF-8');
    message = JSON.parse(typeof line === 'string' ? line : line.toString('utf8'));
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

  /** Length of bodyBytes(), without encoding a text body (a lone surrogate counts as U+FFFD). */
  bodySize() {
    return Buffer.isBuffer(this.body) ? this.body.length : Buffer.byteLength(this.body, 'utf8');
  }
}

/** The `result` for an oversized reply: no headers, empty body, the size that did not fit. */
function tooLargeMessage(id, size) {
  return {
    type: 'result', id, status: 502, headers: [], body: '', body_encoding: 'utf-8',
    error: 'response_too_large', size,
  };
}

/** A `result` message (a literal, not a spread of a shared base: that costs more than the JSON). */
function resultMessage(id, status, headers, body, bodyEncoding) {
  return { type: 'result', id, status, headers, error: null, body, body_encoding: bodyEncoding };
}

/**
 * The `result` line for a reply.
 *
 * Bodies over maxResponseBytes become `error: "response_too_large"`. Text whose JSON escaping would
 * overflow the frame travels base64-encoded instead; if even that does not fit (huge headers), the
 * reply is reported as too large too, with the size that did not fit.
 */
function resultFrame(id, reply, maxResponseBytes, maxFrameBytes) {
  const size = reply.bodySize();
  if (size > maxResponseBytes) {
    return encodeFrame(tooLargeMessage(id, size), maxFrameBytes);
  }
  const headers = reply.headers.map(([name, value]) => [wellFormed(name), wellFormed(value)]);
  if (!Buffer.isBuffer(reply.body)) {
    try {
      // the text exactly as its UTF-8 bytes decode, without the round trip through a Buffer
      return encodeFrame(resultMessage(id, reply.status, headers, wellFormed(reply.body), 'utf-8'), maxFrameBytes);
    } catch (err) {
      if (!(err instanceof FrameTooLarge)) throw err;
    }
  }
  try {
    const body = reply.bodyBytes().toString('base64');
    return encodeFrame(resultMessage(id, reply.status, headers, body, 'base64'), maxFrameBytes);
  } catch (err) {
    if (!(err instanceof FrameTooLarge)) throw err;
    const headerBytes = headers.reduce((n, [k, v]) => n + Buffer.byteLength(k) + Buffer.byteLength(v), 0);
    return encodeFrame(tooLargeMessage(id, size + headerBytes), maxFrameBytes);
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
