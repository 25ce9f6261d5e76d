'use strict';
/**
 * Node.js worker for the functions engine: speaks docs/protocol.md on stdin/stdout.
 *
 * Run as `node runner.js`. The order matters: the protocol descriptors are moved away from fds
 * 0, 1 and 2 before anything else runs (lib/stdio.js), then every output channel a handler could
 * use is captured (lib/capture.js), and only then does the loop start (lib/main.js).
 *
 * Request path through lib/: main (input loop) -> service (init: globals, tracker, loading)
 * -> invocation (callback contract) -> reply / response (HTTP reply) -> framing / channel
 * (frames). tracker stops what an invocation leaves behind and decides `done.clean` (processes
 * finds the processes it left, through /proc);
 * logsink caps and frames log lines; loader, globals build what handlers see; twilio_lazy makes
 * the `twilio` export without loading the package (most of a worker's start-up otherwise), and
 * preload loads it once the worker is idle after `ready`.
 */

const { setupProtocolFds, writeCrash } = require('./lib/stdio');
const { takeChannelEnv, connectChannel } = require('./lib/socket_channel');

// The docker backend's channel socket (taken out of the environment first), or fds 0/1.
const channelEnv = takeChannelEnv();
const fds = setupProtocolFds(channelEnv !== null);

// A knob of the runner, not of the handlers: read, then removed from their environment.
const { idleMsFrom } = require('./lib/preload');
const preloadIdleMs = idleMsFrom(process.env.RUNNER_PRELOAD_IDLE_MS);
delete process.env.RUNNER_PRELOAD_IDLE_MS;

const processGuard = require('./lib/process_guard');
const { installCapture } = require('./lib/capture');
const { Channel } = require('./lib/channel');
const { LogSink } = require('./lib/logsink');
const { serve } = require('./lib/main');

function start(outFd, input) {
  const channel = new Channel(outFd);
  const sink = new LogSink(channel);
  const capture = installCapture(sink, fds.rawStdoutFd, fds.rawStderrFd);
  processGuard.install();
  serve({ channel, sink, capture, notes: fds.notes, preloadIdleMs }, input);
}

if (channelEnv === null) {
  start(fds.outFd, fds.inFd);
} else {
  connectChannel(channelEnv, (err, conn) => {
    if (err) {
      writeCrash(`runner: cannot connect to the engine's channel socket ${channelEnv.path}: ${err.message}\n`);
      process.exit(1);
    }
    start(conn.fd, conn.socket);
  });
}
