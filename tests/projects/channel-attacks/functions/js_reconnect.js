const fs = require('fs');
const net = require('net');

/** Tries a second connection to the worker's channel socket, and closes fds 0 and 1, then answers. */
exports.handler = function handler(context, event, callback) {
  const sock = net.connect({ path: '/run/functions-channel/sock' });
  const done = (outcome) => {
    sock.destroy();
    for (const fd of [0, 1]) {
      try {
        fs.closeSync(fd);
      } catch {
        // already closed
      }
    }
    let listing;
    try {
      listing = fs.readdirSync('/run/functions-channel');
    } catch (err) {
      listing = [err.code];
    }
    const env = Object.keys(process.env).filter((name) => name.includes('CHANNEL'));
    callback(null, { connect: outcome, listing, env });
  };
  sock.once('connect', () => done('connected'));
  sock.once('error', (err) => done(err.code));
};
