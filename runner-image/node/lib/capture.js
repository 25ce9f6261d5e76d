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

/** A reader of one FIFO behind fd 1 or 2: lines as they arrive, plus a synchronous drain. */
function fifoReader(fd, buffer, scratch) {
  const reader = new net.Socket({ fd, readable: true, writable: false });
  reader.on('data', (chunk) => buffer.write(chunk));
  reader.on('error', () => {});
  reader.unref();
  return () => {
    for (;;) {
      const n = readWaiting(fd, scratch);
      if (n <= 0) return;
      buffer.write(Buffer.from(scratch.subarray(0, n)));
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
