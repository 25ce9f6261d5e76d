// Work a handler leaves behind when it calls back, picked by `event.mode`. Whatever of it runs
// records its `event.tag` in `fired` (module state, so a later invocation on the same worker sees
// it) and prints `LEFTOVER FIRED <tag>`. The contract: nothing of it ever runs.
const childProcess = require('child_process');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const { Worker } = require('worker_threads');

const WORKER = `${os.hostname()}:${process.pid}`;
const fired = [];
const resolvers = [];

function fire(tag) {
  fired.push(tag);
  console.log(`LEFTOVER FIRED ${tag}`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Files leftover work writes to: /tmp is the worker's own (a tmpfs in a container).
const marker = (tag) => path.join(os.tmpdir(), `leftover-${tag}`);
const markers = () => fs.readdirSync(os.tmpdir()).filter((name) => name.startsWith('leftover-'));

// A full GC on demand, so a test can make finalizers due.
let gc = null;
function collect() {
  if (gc === null) {
    require('v8').setFlagsFromString('--expose-gc');
    gc = require('vm').runInNewContext('gc');
  }
  gc();
}
const registry = new FinalizationRegistry((tag) => fire(tag));

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
  const state = () => ({ worker: WORKER, fired: [...fired], markers: markers() });
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
    case 'grandchild':
      // The shell exits at once; the subshell it put in the background is orphaned and would
      // print and write its marker after the callback.
      childProcess.exec(`(sleep ${delay / 1000}; echo LEFTOVER FIRED ${tag}; echo ${tag} > ${marker(tag)}) &`);
      return setTimeout(() => callback(null, state()), 100);
    case 'worker-thread': {
      // A worker thread that writes its marker file over and over, and says so.
      const code = `const fs = require('fs'); let i = 0;
        setInterval(() => { fs.appendFileSync(${JSON.stringify(marker(tag))}, String(i++) + '\\n'); console.log('LEFTOVER FIRED ${tag}'); }, 50);`;
      const worker = new Worker(code, { eval: true });
      return worker.on('online', () => callback(null, state()));
    }
    case 'finalizer':
      // Targets only the GC of a later invocation collects: their callbacks would run there.
      for (let i = 0; i < 5; i++) registry.register({ payload: new Array(1000).fill(i) }, tag);
      return callback(null, state());
    case 'collect-then-state':
      collect();
      setTimeout(() => { collect(); setTimeout(() => callback(null, state()), 50); }, 50);
      return undefined;
    case 'stderr':
      // Raw writes to fd 2 and a child's inherited stderr: log lines of this invocation.
      fs.writeSync(2, `fd2 ${tag}\n`);
      childProcess.execFileSync('sh', ['-c', `echo child-stderr ${tag} >&2`], { stdio: 'inherit' });
      return callback(null, state());
    default:
      return callback(`unknown mode ${mode}`);
  }
};
