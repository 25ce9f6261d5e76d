'use strict';
/**
 * One loaded service: built from `init`, it runs invocations one at a time.
 *
 * The `twilio` package is found here, once `init` arrived, so a missing package is answered with
 * `init_error` instead of killing the runner. It is not loaded: `Twilio` (and `require('twilio')`)
 * is a facade that loads each part on first use (lib/twilio_lazy.js), and the worker loads the rest
 * while idle after `ready` (lib/preload.js).
 */

const path = require('path');

const { installGlobals, twilioClient } = require('./globals');
const { Invocation } = require('./invocation');
const { limitsFromInit } = require('./limits');
const { addFallbackModulePath, loadFunction } = require('./loader');
const { setTwiMLModule } = require('./reply');
const { Preloader } = require('./preload');
const lazyTwilio = require('./twilio_lazy');
const { Tracker } = require('./tracker');
const { ProcessWatch } = require('./processes');
const { keepListener, realExit } = require('./process_guard');

const RUNNER_NODE_MODULES = path.resolve(__dirname, '..', 'node_modules');

/** `init` cannot be used (answered with `init_error`). */
class InitError extends Error {}

function entries(init, key, required) {
  const list = init[key] === undefined || init[key] === null ? [] : init[key];
  if (!Array.isArray(list)) throw new InitError(`init.${key} must be a list`);
  for (const [i, entry] of list.entries()) {
    if (entry === null || typeof entry !== 'object') throw new InitError(`init.${key}[${i}] must be an object`);
    for (const field of required) {
      if (typeof entry[field] !== 'string' || !entry[field]) {
        throw new InitError(`init.${key}[${i}].${field} must be a non-empty string, got ${JSON.stringify(entry[field])}`);
      }
    }
  }
  return list;
}

/** The lazy `twilio` export (lib/twilio_lazy.js) and the package's index.js; InitError when missing. */
function loadTwilio(outside) {
  let indexFile;
  try {
    indexFile = lazyTwilio.resolveTwilioIndex();
  } catch (err) {
    throw new InitError(`cannot load the npm \`twilio\` package from ${RUNNER_NODE_MODULES}: ${err.message.split('\n', 1)[0]}`);
  }
  const twilio = lazyTwilio.makeLazyTwilio(indexFile, outside);
  lazyTwilio.install(twilio, indexFile);
  return { twilio, indexFile };
}

class Service {
  /** Build the service from `init` (InitError when it cannot be used); loads every function. */
  constructor(init, plumbing) {
    const { channel, sink, capture } = plumbing;
    this.channel = channel;
    this.sink = sink;
    this.capture = capture;
    try {
      this.limits = limitsFromInit(init.limits);
    } catch (err) {
      throw new InitError(err.message);
    }
    if (typeof init.project_root !== 'string' || !init.project_root) {
      throw new InitError('init.project_root must be a non-empty string');
    }
    const env = init.env === undefined || init.env === null ? {} : init.env;
    if (typeof env !== 'object' || Array.isArray(env)) throw new InitError('init.env must be an object');
    this.projectRoot = path.resolve(init.project_root);
    this.env = { ...env };
    this.devMode = init.dev_mode === true;
    const functions = entries(init, 'functions', ['name', 'file']);
    const assets = entries(init, 'assets', ['url_path', 'file']);

    channel.maxFrameBytes = this.limits.max_frame_bytes;
    sink.configure(this.limits);

    // Lazy loads run as runner code: a module first needed by a handler does not belong to it.
    const outside = (fn) => (this.tracker ? this.tracker.outside(fn) : fn());
    const { twilio, indexFile } = loadTwilio(outside);
    this.twilio = twilio;
    setTwiMLModule(path.join(path.dirname(indexFile), 'twiml', 'TwiML.js'));
    addFallbackModulePath(RUNNER_NODE_MODULES);
    installGlobals({ twilio, projectRoot: this.projectRoot, functions, assets, env: this.env });
    // One helper for every invocation's context (it depends on nothing of the invocation).
    this.getTwilioClient = (options) => twilioClient(twilio, this.env, 'context.getTwilioClient()', options);

    // Which processes are the runner's is decided now, before any user code could start one.
    this.processes = new ProcessWatch();
    this.tracker = new Tracker({ onLateTaint: (work, reason) => this.onLateTaint(work, reason), processes: this.processes });
    this.tracker.install();
    // Listeners, not setUncaughtExceptionCaptureCallback: that one makes require('domain') throw.
    keepListener('uncaughtException', (err) => this.onUncaught(err, 'uncaught exception'));
    keepListener('unhandledRejection', (reason) => this.onUncaught(reason, 'unhandled promise rejection'));

    this.current = null;
    this.queue = [];
    this.looping = false;
    this.lastActivity = performance.now();
    this.preloader = new Preloader(lazyTwilio.preloadSteps(twilio, indexFile, outside), {
      busy: () => this.current !== null || this.queue.length > 0,
      lastActivity: () => this.lastActivity,
      idleMs: plumbing.preloadIdleMs,
    });
    this.functions = new Map();
    this.loadErrors = {};
    for (const fn of functions) {
      const loaded = loadFunction(this.projectRoot, fn.file, (text) => sink.emit('error', text));
      this.functions.set(fn.name, loaded);
      if (loaded.error) this.loadErrors[fn.name] = loaded.error.message;
    }
    // Processes the modules started while loading belong to no invocation.
    if (this.tracker.spawnedOutside) this.processes.takeBaseline();
  }

  readyMessage() {
    return {
      type: 'ready', protocol: 1, runtime: 'node', runtime_version: process.versions.node, pid: process.pid,
      load_errors: this.loadErrors,
    };
  }

  /** Run an `invoke`; one at a time (the engine waits for `done`, a second one is queued). */
  invoke(message) {
    if (typeof message.id !== 'string' || !message.id) {
      this.sink.emit('error', `runner: ignoring an \`invoke\` whose \`id\` is not a non-empty string: ${JSON.stringify(message.id)}`);
      return;
    }
    this.lastActivity = performance.now();
    this.queue.push(message);
    this.runQueued();
  }

  /**
   * Start queued invocations while none is in flight. A loop, not recursion: an invocation that
   * finishes during its own run() (a quiet one) must not start the next one deeper in the stack.
   */
  runQueued() {
    if (this.looping) return;
    this.looping = true;
    try {
      while (this.current === null && this.queue.length) this.start(this.queue.shift());
    } finally {
      this.looping = false;
    }
  }

  start(message) {
    this.sink.begin(message.id);
    const invocation = new Invocation(this, message);
    this.current = invocation;
    invocation.run();
  }

  finished(invocation) {
    if (this.current === invocation) this.current = null;
    this.lastActivity = performance.now();
    this.runQueued();
  }

  /** An uncaught error: the invocation in flight fails with it, else it is logged. */
  onUncaught(err, what) {
    const current = this.current;
    if (current !== null && !current.work.over) {
      current.fail(err, what);
      return;
    }
    const text = err instanceof Error || (err && typeof err.stack === 'string') ? err.stack : String(err);
    this.sink.emit('error', `${what}: ${text}`);
  }

  /** A finished invocation's code ran after its `done`: this worker can no longer be called clean. */
  onLateTaint(work, reason) {
    const current = this.current;
    if (current !== null) {
      const prefix = `an earlier invocation (${work.id}) ran code after its done`;
      if (!current.work.taints.some((t) => t.startsWith(prefix))) current.work.taints.push(`${prefix}: ${reason}`);
      return;
    }
    // Idle: nobody will ask for a verdict before the next invocation runs next to this code. Leave
    // now, so the engine replaces the worker.
    try {
      this.sink.emit('error', `runner: invocation ${work.id} ran code after it was done (${reason}); exiting so the worker is replaced`);
    } finally {
      realExit(70);
    }
  }
}

module.exports = { Service, InitError };
