// Work a handler leaves behind when it calls back, picked by `event.mode`. Whatever of it runs
// records its `event.tag` in `fired` (module state, so a later invocation on the same worker sees
// it) and prints `LEFTOVER FIRED <tag>`. The contract: nothing of it ever runs.
const net = require('net');
const os = require('os');

const WORKER = `${os.hostname()}:${process.pid}`;
const fired = [];
const resolvers = [];

function fire(tag) {
  fired.push(tag);
  console.log(`LEFTOVER FIRED ${tag}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Made at load time, so it belongs to no invocation: for every connection it reads a delay in ms
// and writes a line back after it, so a handler's socket would get data long after its callback.
const server = net.createServer((socket) => {
  socket.on('error', () => {});
  socket.once('data', (data) => {
    setTimeout(() => {
      if (!socket.destroyed) socket.end('late data\n');
    }, Number(String(data)) || 0);
  });
});
server.listen(0, '127.0.0.1');

exports.handler = (context, event, callback) => {
  const { mode, tag } = event;
  const delay = Math.round(Number(event.delay || '1') * 1000);
  const state = () => ({ worker: WORKER, fired: [...fired] });
  switch (mode) {
    case 'state':
      return callback(null, state());
    case 'sleep-then-state':
      setTimeout(() => callback(null, state()), Math.round(Number(event.seconds) * 1000));
      return undefined;
    case 'timeout-before-callback':
      setTimeout(() => fire(tag), delay);
      return callback(null, state());
    case 'timeout-after-callback':
      callback(null, state());
      setTimeout(() => fire(tag), delay);
      return undefined;
    case 'interval':
      setInterval(() => fire(tag), Math.max(50, delay / 4));
      return callback(null, state());
    case 'immediate-and-tick':
      setImmediate(() => fire(`${tag}-immediate`));
      process.nextTick(() => fire(`${tag}-tick`));
      return callback(null, state());
    case 'promise-chain':
      sleep(delay).then(() => fire(tag)).then(() => fire(`${tag}-2`));
      return callback(null, state());
    case 'async-continuation':
      (async () => {
        await sleep(delay);
        fire(tag);
      })();
      return callback(null, state());
    case 'resolved-chain':
      // Already resolved: its reactions are queued as microtasks right now, behind the callback.
      Promise.resolve(1).then(() => fire(tag)).then(() => fire(`${tag}-2`));
      return callback(null, state());
    case 'socket': {
      const socket = net.connect(server.address().port, '127.0.0.1');
      socket.on('data', () => fire(tag));
      socket.on('end', () => fire(`${tag}-end`));
      socket.on('close', () => fire(`${tag}-close`));
      socket.on('error', () => fire(`${tag}-error`));
      socket.on('connect', () => {
        socket.write(String(delay));
        callback(null, state()); // the socket is open, and its data is on the way
      });
      return undefined;
    }
    case 'pending-resolver':
      // A pending promise the module can settle later: the runner cannot prove it never will.
      new Promise((resolve) => resolvers.push(resolve)).then(() => fire(tag));
      return callback(null, state());
    case 'resolve-pending':
      resolvers.splice(0).forEach((resolve) => resolve());
      setTimeout(() => callback(null, state()), 100);
      return undefined;
    default:
      return callback(`unknown mode ${mode}`);
  }
};
