'use strict';
/**
 * The docker backend's channel: a Unix socket the engine listens on, in a directory bind-mounted
 * read-only into this container alone (docs/protocol.md, "Transport").
 *
 * Node cannot dup2 a socket onto fds 0 and 1, and the runner image has no other interpreter for
 * an entry step, so the runner uses the socket itself as the protocol stream: frames are read
 * through a net.Socket and written synchronously to its descriptor (lib/channel.js), exactly as
 * with the pipes of the process backend. The connect is asynchronous, but nothing of a handler
 * can run before it: functions are loaded on `init`, which arrives over this socket.
 *
 * The first line says `{"type":"hello","token":...}` with the token the engine gave in the
 * environment; both variables are removed before anything else reads the environment.
 */

const net = require('net');

const { writeAll } = require('./stdio');

const SOCKET_ENV = 'RUNNER_CHANNEL_SOCKET';
const TOKEN_ENV = 'RUNNER_CHANNEL_TOKEN';

/** Take the channel's path and token out of the environment: `{path, token}` or null. */
function takeChannelEnv() {
  const path = process.env[SOCKET_ENV];
  const token = process.env[TOKEN_ENV] || '';
  delete process.env[SOCKET_ENV];
  delete process.env[TOKEN_ENV];
  return path ? { path, token } : null;
}

/** Connect, say hello; `done(err)` or `done(null, {socket, fd})`. */
function connectChannel({ path, token }, done) {
  const socket = net.createConnection({ path });
  let settled = false;
  const fail = (err) => {
    if (settled) return;
    settled = true;
    socket.destroy();
    done(err);
  };
  socket.once('error', fail);
  socket.once('connect', () => {
    if (settled) return;
    const fd = socket._handle && socket._handle.fd;
    if (typeof fd !== 'number' || fd < 0) {
      fail(new Error('the channel socket has no file descriptor'));
      return;
    }
    try {
      writeAll(fd, Buffer.from(`${JSON.stringify({ type: 'hello', token })}\n`));
    } catch (err) {
      fail(err);
      return;
    }
    settled = true;
    socket.removeListener('error', fail);
    done(null, { socket, fd });
  });
}

module.exports = { takeChannelEnv, connectChannel };
