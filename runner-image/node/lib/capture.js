'use strict';
/**
 * Handler output -> `log` messages. Nothing a handler writes reaches the protocol stream:
 *
 *   console.log / info / debug / dir / table ...  -> info   (behavior.md: debug is info)
 *   console.warn                          -> warn     console.error / trace -> error
 *   process.stdout.write                  -> info     process.stderr.write  -> error
 *   raw writes to fd 1 (fs.writeSync(1), children with inherited stdio) -> info, via the FIFO
 *   that lib/stdio.js put behind fd 1
 *   raw writes to fd 2 (fs.writeSync(2), children's inherited stderr)    -> error, via the FIFO
 *   behind fd 2
 *
 * process.stdin is an empty stream: the engine's frames are not the handler's to read.
 */

const crypto = require('crypto');
const { EventEmitter } = require('events');
const fs = require('fs');
const net = require('net');
const { Readable, Writable } = require('stream');
const { Console } = require('console');

/** The minimal stream a Console writes to: synchronous, one call per console line. */
class SinkTarget extends EventEmitter {
  constructor(buffer) {
    super();
    this.buffer = buffer;
  }

  write(chunk, encoding, cb) {
    this.buffer.write(chunk);
    const done = typeof encoding === 'function' ? encoding : cb;
    if (typeof done === 'function') done(null);
    return true;
  }
}

/** A stand-in for process.stdout / process.stderr: a Writable that logs each line at one level. */
function stdioWritable(buffer, fd) {
  const stream = new Writable({
    decodeStrings: false,
    write(chunk, encoding, cb) {
      buffer.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding === 'buffer' ? 'utf8' : encoding) : chunk);
      cb();
    },
    writev(chunks, cb) {
      for (const { chunk, encoding } of chunks) {
        buffer.write(typeof chunk === 'string' ? Buffer.from(chunk, encoding === 'buffer' ? 'utf8' : encoding) : chunk);
      }
      cb();
    },
  });
  // The real stdio streams cannot be ended or destroyed by user code; neither can these.
  stream.end = function end(chunk, encoding, cb) {
    if (chunk !== undefined && chunk !== null && typeof chunk !== 'function') this.write(chunk, encoding);
    const done = [chunk, encoding, cb].find((a) => typeof a === 'function');
    if (done) process.nextTick(done);
    return this;
  };
  stream.destroy = function destroy() {
    return this;
  };
  Object.assign(stream, {
    fd,
    isTTY: false,
    _isStdio: true,
    getColorDepth: () => 1,
    hasColors: () => false,
  });
  return stream;
}

function emptyStdin() {
  const stdin = new Readable({ read() { this.push(null); } });
  Object.assign(stdin, { fd: 0, isTTY: false, setRawMode: () => stdin });
  return stdin;
}

function defineStdio(name, value) {
  Object.defineProperty(process, name, { configurable: true, enumerable: false, get: () => value });
}

/** Bytes read from a non-blocking descriptor into buf; 0 when nothing is waiting (EAGAIN) or at its end. */
function readWaiting(fd, buf) {
  try {
    return fs.readSync(fd, buf, 0, buf.length, null);
  } catch {
    return 0;
  }
}

/**
 * A reader of one FIFO behind fd 1 or 2: lines as they arrive (the event loop), and `drain()`, which
 * reads synchronously what was written up to now. It writes a random marker through its private
 * write end and reads until the marker comes back: cheaper than a read that fails with EAGAIN (an
 * exception per call), and it proves every earlier byte was read.
 */
function fifoReader({ readFd, markerFd }, buffer, scratch) {
  const marker = Buffer.from(`\u0000\u001bdrain-${crypto.randomBytes(8).toString('hex')}\u0000`, 'latin1');
  const feed = (data) => {
    let at = data.indexOf(marker);
    while (at !== -1) { // a marker the event loop got to first (never in practice): not output
      data = Buffer.concat([data.subarray(0, at), data.subarray(at + marker.length)]);
      at = data.indexOf(marker);
    }
    if (data.length) buffer.write(data);
  };
  const reader = new net.Socket({ fd: readFd, readable: true, writable: false });
  reader.on('data', feed);
  reader.on('error', () => {});
  reader.unref();

  const untilEmpty = () => {
    for (;;) {
      const n = readWaiting(readFd, scratch);
      if (n <= 0) return;
      buffer.write(Buffer.from(scratch.subarray(0, n)));
    }
  };
  return () => {
    try {
      fs.writeSync(markerFd, marker); // smaller than PIPE_BUF: all or nothing
    } catch {
      untilEmpty(); // the FIFO is full (EAGAIN): read until it is empty instead
      return;
    }
    let pending = null;
    for (;;) {
      const n = readWaiting(readFd, scratch);
      if (n <= 0) { // the marker was taken by someone else: what was read is still output
        if (pending) feed(pending);
        return;
      }
      if (pending === null && n === marker.length && scratch.compare(marker, 0, marker.length, 0, n) === 0) return;
      const data = pending === null ? Buffer.from(scratch.subarray(0, n)) : Buffer.concat([pending, scratch.subarray(0, n)]);
      const at = data.indexOf(marker);
      if (at !== -1) {
        feed(Buffer.concat([data.subarray(0, at), data.subarray(at + marker.length)]));
        return;
      }
      // Output without the marker yet: keep a tail that could be the start of a marker cut in two.
      const keep = Math.min(data.length, marker.length - 1);
      if (data.length > keep) buffer.write(data.subarray(0, data.length - keep));
      pending = Buffer.from(data.subarray(data.length - keep));
    }
  };
}

/** Route every output channel of handler code into the sink. Returns `{drain}` for raw fds 1 and 2. */
function installCapture(sink, rawStdoutFd, rawStderrFd = null) {
  const info = sink.lineBuffer('info');
  const error = sink.lineBuffer('error');
  const warn = sink.lineBuffer('warn');

  const main = new Console({ stdout: new SinkTarget(info), stderr: new SinkTarget(error), colorMode: false });
  const warnConsole = new Console({ stdout: new SinkTarget(warn), stderr: new SinkTarget(warn), colorMode: false });
  for (const key of Object.keys(Console.prototype).concat(Object.keys(main))) {
    if (typeof main[key] === 'function' && !key.startsWith('_')) console[key] = main[key];
  }
  console.warn = warnConsole.warn;
  console.debug = main.log;

  defineStdio('stdout', stdioWritable(sink.lineBuffer('info'), 1));
  defineStdio('stderr', stdioWritable(sink.lineBuffer('error'), 2));
  defineStdio('stdin', emptyStdin());

  const scratch = Buffer.allocUnsafe(64 * 1024);
  const drains = [];
  if (rawStdoutFd !== null) drains.push(fifoReader(rawStdoutFd, sink.lineBuffer('info'), scratch));
  if (rawStderrFd !== null) drains.push(fifoReader(rawStderrFd, sink.lineBuffer('error'), scratch));
  if (drains.length === 0) return { drain() {} };
  return {
    /** Read whatever is waiting behind fds 1 and 2 now, so it is logged before the next frame. */
    drain() {
      // Usually nothing is waiting and the read fails with EAGAIN: no stack for that error.
      const stackTraceLimit = Error.stackTraceLimit;
      Error.stackTraceLimit = 0;
      try {
        for (const drain of drains) drain();
      } finally {
        Error.stackTraceLimit = stackTraceLimit;
      }
    },
  };
}

module.exports = { installCapture };
