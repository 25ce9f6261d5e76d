'use strict';
/**
 * The runner's loop: bootstrap on `init`, then one `invoke` at a time, until the engine closes
 * the input.
 *
 * Every line is handled inside its own `try`: a bad line is answered (`init_error` before the
 * service is loaded, an `error` log after), never fatal.
 */

const fs = require('fs');
const net = require('net');

const { BadFrame, decodeLine } = require('./framing');
const { realExit } = require('./process_guard');
const { writeCrash } = require('./stdio');

const PROTOCOL_VERSION = 1;

class Runner {
  constructor(plumbing) {
    this.p = plumbing;
    this.service = null;
  }

  handleLine(line) {
    if (line.length === 0 || (line.length === 1 && line[0] === 13)) return;
    let message;
    try {
      message = decodeLine(line);
    } catch (err) {
      if (!(err instanceof BadFrame)) throw err;
      this.reject(`malformed message from the engine: ${err.message}`);
      return;
    }
    if (message.type === 'init') this.init(message);
    else if (message.type === 'invoke' && this.service !== null) this.service.invoke(message);
    else if (this.service === null) this.reject(`expected \`init\` first, got \`${message.type}\``);
    else this.p.sink.emit('error', `runner: ignoring unexpected \`${message.type}\` message`);
  }

  reject(message) {
    if (this.service === null) this.p.channel.send({ type: 'init_error', message });
    else this.p.sink.emit('error', `runner: ${message}`);
  }

  init(message) {
    if (this.service !== null) {
      this.p.sink.emit('error', 'runner: ignoring a second `init`');
      return;
    }
    if (message.protocol !== PROTOCOL_VERSION) {
      this.reject(`protocol version mismatch: this runner speaks ${PROTOCOL_VERSION}, init asked for ${JSON.stringify(message.protocol)}`);
      return;
    }
    // Loaded here, not at start-up: `twilio` is required by the service module's constructor.
    // eslint-disable-next-line global-require
    const { Service, InitError } = require('./service');
    let service;
    try {
      service = new Service(message, this.p);
    } catch (err) {
      if (!(err instanceof InitError)) throw err;
      this.reject(err.message);
      return;
    }
    this.p.capture.drain();
    this.p.sink.flushStreams();
    this.service = service;
    this.p.channel.send(service.readyMessage());
    service.preloader.start();
  }

  /** A runner bug: report it and keep serving. */
  crashed(err) {
    try {
      writeCrash(`runner error: ${err && err.stack ? err.stack : err}\n`);
      if (this.service === null) this.p.channel.send({ type: 'init_error', message: `runner error: ${err && err.message}` });
      else this.p.sink.emit('error', `runner error: ${err && err.message}`);
    } catch {
      // nothing left to report with
    }
  }
}

/** A readable stream over the protocol input descriptor (a pipe, a socket, or a file), or the channel socket itself. */
function inputStream(fd) {
  if (typeof fd === 'object' && fd !== null) return fd; // already a stream: the channel socket
  let st = null;
  try {
    st = fs.fstatSync(fd);
  } catch {
    // fall through to a file stream, which reports the error itself
  }
  if (st && (st.isFIFO() || st.isSocket())) return new net.Socket({ fd, readable: true, writable: false });
  return fs.createReadStream(null, { fd, autoClose: false, highWaterMark: 64 * 1024 });
}

/** Read newline-delimited frames from fd and hand each to the runner; exit when the input ends. */
function serve(plumbing, fd) {
  const runner = new Runner(plumbing);
  for (const note of plumbing.notes) plumbing.sink.emit('warn', `runner: ${note}`);
  const stream = inputStream(fd);
  let parts = [];
  stream.on('data', (chunk) => {
    let start = 0;
    let newline = chunk.indexOf(10);
    while (newline !== -1) {
      parts.push(chunk.subarray(start, newline));
      const line = parts.length === 1 ? parts[0] : Buffer.concat(parts);
      parts = [];
      try {
        runner.handleLine(line);
      } catch (err) {
        runner.crashed(err);
      }
      start = newline + 1;
      newline = chunk.indexOf(10, start);
    }
    if (start < chunk.length) parts.push(chunk.subarray(start));
  });
  const finish = () => {
    try {
      plumbing.capture.drain();
      plumbing.sink.flushStreams();
    } finally {
      realExit(0); // do not wait for anything a handler left behind
    }
  };
  stream.on('end', finish);
  stream.on('error', (err) => {
    writeCrash(`runner: cannot read the protocol input: ${err.message}\n`);
    realExit(1);
  });
}

module.exports = { serve, Runner };
