'use strict';
/** Turns output text into `log` frames: one line per message, chopped, capped per invocation. */

const { LOG_CHUNK_BYTES, logFrame, utf8Chunks } = require('./framing');
const { DEFAULT_LIMITS } = require('./limits');

const LEVELS = new Set(['debug', 'info', 'warn', 'error']);

/**
 * Where every piece of handler output ends up.
 *
 * Output is attributed to the invocation in flight (`id: null` during bootstrap and between
 * invocations). Once a message does not fit the invocation's budget, everything after it in that
 * invocation is dropped and counted, so the log never has holes in the middle; the count travels
 * in `done.log_bytes_dropped`.
 *
 * After a `done` with `clean: false` the sink is muted for good: the engine replaces the worker,
 * and whatever the invocation left running must not log under a later invocation's id (or `null`)
 * in the meantime. The Python runner does the same.
 */
class LogSink {
  constructor(channel) {
    this.channel = channel;
    this.id = null;
    this.maxBytes = DEFAULT_LIMITS.max_log_bytes;
    this.chunkBytes = LOG_CHUNK_BYTES;
    this.used = 0;
    this.dropped = 0;
    this.full = false;
    this.muted = false;
    this.streams = []; // LineBuffers flushed at invocation boundaries
  }

  /** Apply the limits of `init`; the chunk size keeps worst-case JSON escaping (x6) under the frame cap. */
  configure(limits) {
    this.maxBytes = limits.max_log_bytes;
    this.chunkBytes = Math.max(64, Math.min(LOG_CHUNK_BYTES, Math.floor((limits.max_frame_bytes - 256) / 6)));
  }

  /** Attribute output to this invocation, with a fresh budget. */
  begin(id) {
    this.flushStreams();
    this.id = id;
    this.reset();
  }

  /**
   * Flush partial lines, detach from the invocation, and return how many bytes were dropped.
   * `mute` (the verdict was dirty): nothing is sent any more, by this invocation or any later one.
   */
  end(mute = false) {
    this.flushStreams();
    const dropped = this.dropped;
    this.id = null;
    this.reset();
    if (mute) this.muted = true;
    return dropped;
  }

  reset() {
    this.used = 0;
    this.dropped = 0;
    this.full = false;
  }

  /** A line-buffered writer for a byte/text stream at one level (process.stdout, raw fd 1). */
  lineBuffer(level) {
    const buffer = new LineBuffer(this, level);
    this.streams.push(buffer);
    return buffer;
  }

  flushStreams() {
    for (const stream of this.streams) stream.flush();
  }

  /** Send text as one message per line (split on '\n'), each line chopped to chunkBytes. */
  emit(level, text) {
    const lines = String(text).split('\n');
    for (let line of lines) {
      if (line.endsWith('\r')) line = line.slice(0, -1);
      this.emitLine(level, Buffer.from(line, 'utf8'));
    }
  }

  /** Send one line given as bytes (invalid UTF-8 replaced before the budget counts it). */
  emitLine(level, bytes) {
    const valid = Buffer.from(bytes.toString('utf8'), 'utf8');
    for (const chunk of utf8Chunks(valid, this.chunkBytes)) this.send(level, chunk);
  }

  send(level, chunk) {
    if (this.muted) return;
    const size = chunk.length;
    if (this.full || this.used + size > this.maxBytes) {
      this.full = true;
      this.dropped += size;
      return;
    }
    this.used += size;
    this.channel.send(logFrame(this.id, LEVELS.has(level) ? level : 'info', chunk.toString('utf8')));
  }
}

/** Collects a stream's bytes and emits complete lines; a partial line waits for its newline or a flush. */
class LineBuffer {
  constructor(sink, level) {
    this.sink = sink;
    this.level = level;
    this.pending = [];
    this.pendingBytes = 0;
  }

  write(data) {
    let buf = Buffer.isBuffer(data) ? data : Buffer.from(String(data), 'utf8');
    let newline = buf.indexOf(10);
    while (newline !== -1) {
      let line = buf.subarray(0, newline);
      if (this.pending.length) {
        line = Buffer.concat([...this.pending, line]);
        this.pending = [];
        this.pendingBytes = 0;
      }
      if (line.length && line[line.length - 1] === 13) line = line.subarray(0, line.length - 1);
      this.sink.emitLine(this.level, line);
      buf = buf.subarray(newline + 1);
      newline = buf.indexOf(10);
    }
    if (buf.length) {
      this.pending.push(Buffer.from(buf));
      this.pendingBytes += buf.length;
      if (this.pendingBytes >= this.sink.chunkBytes) this.flush();
    }
  }

  flush() {
    if (!this.pending.length) return;
    const line = Buffer.concat(this.pending);
    this.pending = [];
    this.pendingBytes = 0;
    this.sink.emitLine(this.level, line);
  }
}

module.exports = { LogSink };
