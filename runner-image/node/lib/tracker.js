'use strict';
/**
 * Leftover work: what an invocation started, and how it is stopped once the callback is called.
 *
 * OWNERSHIP. Each invocation runs inside `als.run(work, ...)`. AsyncLocalStorage hands the store on
 * to everything created from there (timers, sockets, requests, promise reactions, and what *they*
 * create), so an async_hooks `init` hook that reads the store knows the owner of every new
 * resource. Runner code that schedules work while a handler is on the stack does it inside
 * `als.run(undefined)` (tracker.outside), so it never belongs to an invocation.
 *
 * STOPPING ("sweep"), synchronously when the callback is first called, again on the next tick
 * (after the handler's own synchronous code), on the next turn and right before `done`:
 *   Timeout, Immediate        clearTimeout / clearImmediate, callback replaced by a no-op
 *   TickObject, Microtask     callback replaced by a no-op
 *   requests                  `oncomplete` / `ondone` replaced by no-ops (fs, dns, connect, write,
 *                             shutdown, crypto jobs): they may complete, nothing of the handler runs
 *   handles                   the JS owner (socket, server, child process, watcher, worker, zlib
 *                             stream, message port) loses every listener (an http.Agent is told
 *                             to drop the socket first), gets a no-op 'error' listener, then is
 *                             destroyed / closed / SIGKILLed / terminated; node's handling of
 *                             a later exit (child process, worker) runs as runner code
 *   FinalizationRegistry      a cleanup callback for a target registered by an invocation that is
 *                             over does not run (the global constructor is the runner's subclass)
 *   promise reactions         `then` / `catch` / `finally` callbacks registered by the invocation
 *                             are guarded: once the callback was called they do not run and their
 *                             promise never settles, so the rest of the chain never runs either
 * Timers, immediates and ticks the invocation creates after its callback are neutralised at birth.
 * Process listeners added by the handler are removed by the invocation (lib/invocation.js).
 *
 * THE RULE FOR `done.clean`. Clean only if every resource the invocation created was finished
 * or stopped by us, which after the final sweep means all of:
 *   0. no worker_threads Worker it started was still running at the callback (the thread may
 *      have changed anything in the process: it is terminated, and the worker replaced), and no
 *      process it started is still running other than the direct children the sweep killed (an
 *      orphaned grandchild, found through /proc by lib/processes.js; it is killed);
 *   1. no un-cancellable operation is in flight (fs.promises requests: their completion resolves
 *      a promise directly, which nothing can intercept);
 *   2. no promise the invocation created is still pending and still reachable after a full GC (a
 *      reachable pending promise can be settled later, e.g. by a resolver kept in module state,
 *      and run the invocation's code then; an unreachable one never can);
 *   3. no code of the invocation ran after its callback other than no-ops and guarded reactions:
 *      an `await` continuation resuming, or any other callback of the invocation firing, is seen by
 *      the `before` hook and "taints" the invocation.
 * Otherwise `done` says `clean: false` with the reasons and the engine replaces the worker before
 * any later invocation. Code that runs synchronously after `callback()` in the same turn cannot be
 * stopped (as in the hosted service) and is not a leftover.
 *
 * Without a GC to call (V8 refusing --expose-gc), every pending promise counts as reachable.
 *
 * A taint seen after `done` (the invocation's code resumed later after all) is reported through
 * `onLateTaint`: the runner marks the invocation in flight dirty, or exits when idle.
 *
 * KNOWN LIMITS. What native code does (an addon's threads or fork()), and a FinalizationRegistry
 * or Worker class taken from another realm (vm, a worker), is not seen. A fetch() still in flight at the callback stays queued in undici's process-wide
 * pool, so its promises stay reachable: `clean: false`. Listeners a handler adds to long-lived
 * emitters other than `process` (its own module-level ones) are not removed. Process-wide
 * singletons that the first invocation happens to create (a module-level connection pool made
 * lazily) belong to that invocation and are stopped with it.
 */

const { AsyncLocalStorage, createHook, executionAsyncResource } = require('async_hooks');
const { killProcess } = require('./process_guard');
const v8 = require('v8');
const vm = require('vm');

const als = new AsyncLocalStorage();
const noop = () => {};
const originalThen = Promise.prototype.then;

const TIMER = 1;
const IMMEDIATE = 2;
const TICK = 3;
const REQUEST = 4;
const HANDLE = 5;
const UNCANCELLABLE = 6;

const HANDLE_TYPES = [
  'TCPWRAP', 'TCPSERVERWRAP', 'PIPEWRAP', 'PIPESERVERWRAP', 'UDPWRAP', 'PROCESSWRAP', 'FSEVENTWRAP',
  'STATWATCHER', 'SIGNALWRAP', 'TTYWRAP', 'TLSWRAP', 'ZLIB', 'MESSAGEPORT', 'WORKER', 'HTTP2SESSION',
];
const REQUEST_TYPES = [
  'FSREQCALLBACK', 'GETADDRINFOREQWRAP', 'GETNAMEINFOREQWRAP', 'QUERYWRAP', 'TCPCONNECTWRAP',
  'PIPECONNECTWRAP', 'WRITEWRAP', 'SHUTDOWNWRAP', 'UDPSENDWRAP',
];
const KINDS = new Map([
  ['Timeout', TIMER], ['Immediate', IMMEDIATE], ['TickObject', TICK], ['Microtask', TICK],
  ['FSREQPROMISE', UNCANCELLABLE], ['FILEHANDLECLOSEREQ', UNCANCELLABLE],
  ...HANDLE_TYPES.map((t) => [t, HANDLE]),
  ...REQUEST_TYPES.map((t) => [t, REQUEST]),
]);

/** What kind of resource a type is; 0 for passive ones that only run when something else drives them. */
function kindOf(type) {
  const kind = KINDS.get(type);
  if (kind !== undefined) return kind;
  // crypto jobs (PBKDF2REQUEST, RANDOMBYTESREQUEST, SCRYPTREQUEST, ...) report through `ondone`
  return /REQUEST$/.test(type) ? REQUEST : 0;
}

/** A full, synchronous GC, or null when V8 will not expose one. */
const collectGarbage = (() => {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc');
    return typeof gc === 'function' ? gc : null;
  } catch {
    return null;
  }
})();

/** One invocation's tracked resources; also the AsyncLocalStorage store that marks its code. */
class Work {
  constructor(id) {
    this.id = id;
    this.over = false; // the callback was called: nothing of ours may run any more
    this.closed = false; // `done` was sent: stop tracking
    this.live = new Map(); // asyncId -> {type, kind, resource}, non-promise resources to stop
    this.stopped = null; // WeakSet of resources we neutralised (their callbacks are no-ops), made on first use
    this.taints = [];
    this.resources = 0; // async resources (not promises) it ever created, of any type
    this.pendingPromises = 0; // its promises not yet settled
    this.spawned = false; // it started a process or a worker thread: /proc is checked at the verdict
    this.killed = null; // Set of pids of direct children the sweep SIGKILLed, made on first use
  }

  markStopped(resource) {
    if (this.stopped === null) this.stopped = new WeakSet();
    this.stopped.add(resource);
  }

  isStopped(resource) {
    return this.stopped !== null && this.stopped.has(resource);
  }
}

class Tracker {
  /**
   * onLateTaint(work, reason) is called when a finished invocation's code runs after `done`;
   * processes (lib/processes.js) finds the processes an invocation left, or is null.
   */
  constructor({ onLateTaint, processes = null }) {
    this.onLateTaint = onLateTaint;
    this.processes = processes;
    this.spawnedOutside = false; // a process or worker was started by code of no invocation (module load)
    this.pending = new Map(); // promise asyncId -> [work, WeakRef(promise)], pending promises
    this.guarded = new WeakSet(); // promises whose reactions our `then` guard wraps
    this.hook = null;
  }

  /** Start tracking. Must run before any user code, so every `then` a handler uses is the guarded one. */
  install() {
    const tracker = this;
    Promise.prototype.then = function then(onFulfilled, onRejected) {
      const work = als.getStore();
      if (!(work instanceof Work)) return originalThen.call(this, onFulfilled, onRejected);
      const derived = originalThen.call(this, guard(work, onFulfilled), guard(work, onRejected));
      tracker.guarded.add(derived);
      return derived;
    };
    this.hook = createHook({
      init: (asyncId, type, triggerAsyncId, resource) => {
        try {
          this.onInit(asyncId, type, resource);
        } catch {
          // a throw inside an async hook kills the process: never
        }
      },
      before: (asyncId) => {
        try {
          this.onBefore(asyncId);
        } catch {
          // see above
        }
      },
      after: (asyncId) => {
        try {
          this.onAfter(asyncId);
        } catch {
          // see above
        }
      },
      promiseResolve: (asyncId) => {
        this.forget(asyncId);
      },
    });
    this.hook.enable();
    this.watchSyncSpawns();
    this.linkWorkers();
    installFinalizationRegistry();
  }

  /** spawnSync / execSync / execFileSync start a process without an async resource: mark them too. */
  watchSyncSpawns() {
    let binding;
    try {
      binding = process.binding('spawn_sync');
    } catch {
      return;
    }
    const original = binding && binding.spawn;
    if (typeof original !== 'function') return;
    const tracker = this;
    binding.spawn = function spawn(...args) {
      tracker.noteSpawn();
      return Reflect.apply(original, this, args);
    };
  }

  noteSpawn() {
    const work = als.getStore();
    if (work instanceof Work) work.spawned = true;
    else this.spawnedOutside = true;
  }

  /**
   * `require('worker_threads').Worker` becomes a subclass that links its native handle (what the
   * async hook sees) to the Worker, so the sweep can silence its listeners and terminate it.
   */
  linkWorkers() {
    // eslint-disable-next-line global-require
    const workerThreads = require('worker_threads');
    const Original = workerThreads.Worker;
    class Worker extends Original {
      constructor(...args) {
        super(...args);
        const key = Object.getOwnPropertySymbols(this).find((s) => s.description === 'kHandle');
        const handle = key === undefined ? undefined : this[key];
        if (handle === null || typeof handle !== 'object') return;
        workerOwners.set(handle, this);
        const { onexit } = handle;
        if (typeof onexit !== 'function') return;
        handle.onexit = function markExited(...exitArgs) {
          exitedWorkers.add(handle); // its 'exit' listeners run now: the thread itself is over
          return Reflect.apply(onexit, this, exitArgs);
        };
      }
    }
    workerThreads.Worker = Worker;
  }

  /** Run fn as the invocation's code: everything it creates belongs to `work`. */
  run(work, fn) {
    return als.run(work, fn);
  }

  /**
   * Run fn as runner code, even when called from inside a handler (callback, console).
   * `als.run(undefined)`, not `als.exit()`: exit disables the storage and enables it again, which
   * re-installs V8's promise hooks twice on every call.
   */
  outside(fn) {
    return als.run(undefined, fn);
  }

  /**
   * Nothing of the invocation can run any more, without waiting for the event loop: it never created
   * an async resource, none of its promises is pending, and none of its code ran after the callback.
   * The verdict is then clean whenever it is taken.
   */
  quiet(work) {
    return work.resources === 0 && work.pendingPromises === 0 && work.taints.length === 0;
  }

  /** A promise settled (or was collected): it no longer counts as pending. */
  forget(asyncId) {
    const entry = this.pending.get(asyncId);
    if (entry === undefined) return;
    this.pending.delete(asyncId);
    entry[0].pendingPromises -= 1;
  }

  onInit(asyncId, type, resource) {
    const work = als.getStore();
    if (!(work instanceof Work) || work.closed) {
      if (type === 'PROCESSWRAP' || type === 'WORKER') this.spawnedOutside = true;
      return;
    }
    if (type === 'PROMISE') {
      this.pending.set(asyncId, [work, new WeakRef(resource)]);
      work.pendingPromises += 1;
      return;
    }
    work.resources += 1;
    if (type === 'PROCESSWRAP' || type === 'WORKER') work.spawned = true;
    const kind = kindOf(type);
    if (kind === 0) return;
    work.live.set(asyncId, { type, kind, resource });
    if (work.over) neutraliseAtBirth(work, kind, resource);
  }

  onBefore() {
    const work = als.getStore();
    if (!(work instanceof Work) || !work.over) return;
    const resource = executionAsyncResource();
    if (work.isStopped(resource) || this.guarded.has(resource)) return;
    // node's internal promises (primordials' SafePromise) are not `instanceof Promise`
    const what = resource instanceof Promise || typeof resource.then === 'function'
      ? 'an `await` (or other promise continuation) resumed'
      : `a callback (${describe(resource)}) ran`;
    this.taint(work, `code of the invocation ran after its callback: ${what}`);
  }

  onAfter(asyncId) {
    const work = als.getStore();
    if (!(work instanceof Work)) return;
    const entry = work.live.get(asyncId);
    if (entry === undefined || entry.kind === HANDLE) return;
    if (entry.kind !== TIMER || entry.resource._destroyed) work.live.delete(asyncId);
  }

  taint(work, reason) {
    if (!work.taints.includes(reason)) work.taints.push(reason);
    if (work.closed) this.onLateTaint(work, reason);
  }

  /**
   * The callback was called: from now on nothing of the invocation runs. A worker thread still
   * running now makes it dirty (it ran next to the runner all along). Sweeps right away.
   */
  end(work) {
    work.over = true;
    if (work.spawned) {
      for (const entry of work.live.values()) {
        if (entry.type === 'WORKER' && workerRunning(entry.resource)) {
          this.taint(work, 'a worker_threads Worker it started was still running at the callback (terminated)');
          break;
        }
      }
    }
    this.sweep(work);
  }

  /** Stop every live resource of the invocation (idempotent; runs as runner code). */
  sweep(work) {
    if (work.live.size === 0) return;
    this.outside(() => {
      for (const [asyncId, entry] of work.live) {
        try {
          stop(work, entry);
        } catch {
          // a resource in an odd state: it is still counted below if it is un-cancellable
        }
        if (entry.kind !== UNCANCELLABLE) work.live.delete(asyncId);
      }
    });
  }

  /**
   * The verdict for `done`: `{clean, reason}` after a final sweep (rule at the top of this file).
   * Runs a full GC only when promises of the invocation are still pending.
   */
  verdict(work) {
    this.sweep(work);
    const reasons = [...work.taints];
    const inFlight = [...work.live.values()].filter((e) => e.kind === UNCANCELLABLE);
    if (inFlight.length) {
      const types = [...new Set(inFlight.map((e) => e.type))].join(', ');
      reasons.push(`${inFlight.length} un-cancellable operation(s) still in flight (${types}: fs.promises)`);
    }
    const refs = [];
    if (work.pendingPromises > 0) {
      for (const [asyncId, [owner, ref]] of this.pending) {
        if (owner === work) refs.push([asyncId, ref]);
      }
    }
    if (refs.length) {
      if (collectGarbage !== null) collectGarbage();
      let alive = 0;
      for (const [asyncId, ref] of refs) {
        if (ref.deref() === undefined) this.forget(asyncId);
        else alive += 1;
      }
      if (alive) {
        reasons.push(`${alive} promise(s) created by the invocation are still pending and reachable: settling them later would run its code`);
      }
    }
    if (work.spawned && this.processes !== null) {
      const left = this.processes.leftovers(work.killed || new Set());
      if (left.length) {
        for (const { pid } of left) killProcess(pid);
        const names = left.slice(0, 10).map(({ pid, comm }) => `${pid} (${comm})`).join(', ');
        reasons.push(`processes it started were still running after its callback (killed): ${names}${left.length > 10 ? ', ...' : ''}`);
      }
    }
    return { clean: reasons.length === 0, reason: reasons.length ? reasons.join('; ') : null };
  }

  /** `done` was sent: forget the invocation (a late taint still reaches onLateTaint). */
  close(work) {
    work.closed = true;
    work.live.clear();
    if (work.pendingPromises === 0) return;
    for (const [asyncId, [owner]] of this.pending) {
      if (owner === work) this.forget(asyncId);
    }
  }
}

/** A `then` callback that does nothing once the invocation is over (and never settles its promise). */
function guard(work, fn) {
  if (typeof fn !== 'function') return fn;
  return function guardedReaction(value) {
    if (work.over) return new Promise(noop);
    return fn(value);
  };
}

function neutraliseAtBirth(work, kind, resource) {
  if (kind === TIMER) {
    resource._onTimeout = noop;
    resource._repeat = null;
  } else if (kind === IMMEDIATE) {
    resource._onImmediate = noop;
  } else if (kind === TICK) {
    resource.callback = noop;
    resource.args = undefined;
  } else {
    return; // requests and handles get their callbacks after `init`: the next sweep stops them
  }
  work.markStopped(resource);
}

function stop(work, { kind, resource }) {
  switch (kind) {
    case TIMER:
      resource._onTimeout = noop;
      resource._repeat = null;
      clearTimeout(resource);
      break;
    case IMMEDIATE:
      resource._onImmediate = noop;
      clearImmediate(resource);
      break;
    case TICK:
      resource.callback = noop;
      resource.args = undefined;
      break;
    case REQUEST:
      if (typeof resource.oncomplete === 'function') resource.oncomplete = noop;
      if (typeof resource.ondone === 'function') resource.ondone = noop;
      break;
    case HANDLE:
      closeHandle(work, resource);
      break;
    default:
      return;
  }
  work.markStopped(resource);
}

let ownerSymbol = null;
const workerOwners = new WeakMap(); // native Worker handle -> the worker_threads.Worker it belongs to
const exitedWorkers = new WeakSet(); // native Worker handles whose thread has ended

/** The JS object a native handle belongs to (net.Socket, ChildProcess, FSWatcher...), if any. */
function ownerOf(resource) {
  if (ownerSymbol === null) {
    // Found on the first handle that has it (a Worker handle has none).
    ownerSymbol = Object.getOwnPropertySymbols(resource).find((s) => s.description === 'owner_symbol') || null;
    if (ownerSymbol === null) return undefined;
  }
  const owner = ownerSymbol !== null ? resource[ownerSymbol] : undefined;
  return owner !== null && typeof owner === 'object' && owner !== process ? owner : undefined;
}

/**
 * A handle that reports its end later (a child process's or worker's `onexit`): node's own
 * bookkeeping then (closing the handle, a `flushStdio` tick, 'exit' on the silenced owner) runs as
 * runner code. Otherwise an exit reaped after `done` schedules work of the finished invocation
 * that nothing neutralises any more, which reads as the invocation's code running late.
 */
function exitAsRunnerCode(resource) {
  const onexit = resource.onexit;
  if (typeof onexit !== 'function') return;
  resource.onexit = function runnerOnExit(...args) {
    return als.run(undefined, () => Reflect.apply(onexit, this, args));
  };
}

function closeHandle(work, resource) {
  const owner = workerOwners.get(resource) || ownerOf(resource);
  const isProcess = resource.constructor && resource.constructor.name === 'Process';
  exitAsRunnerCode(resource);
  if (isProcess && typeof resource.pid === 'number' && resource.pid > 0) {
    if (work.killed === null) work.killed = new Set();
    work.killed.add(resource.pid);
  }
  if (owner === undefined && typeof resource.stopThread === 'function') {
    resource.stopThread(); // a Worker made from a class the runner did not link: no listeners to silence
    return;
  }
  if (owner !== undefined) {
    silence(owner);
    if (isProcess) {
      owner.kill('SIGKILL'); // its exit is reaped by the handle, whose callback is runner code now
    } else if (typeof owner.terminate === 'function') {
      owner.terminate();
    } else if (typeof owner.destroy === 'function') {
      owner.destroy();
    } else if (typeof owner.close === 'function') {
      owner.close();
    } else if (typeof owner.stop === 'function') {
      owner.stop();
    }
  }
  if (isProcess) {
    if (owner === undefined && typeof resource.kill === 'function') resource.kill(9);
    return; // closing a process handle before it exits would leave a zombie
  }
  if (typeof resource.close === 'function') resource.close();
}

let freeHttpParser;

/** node's own `freeParser` (what a socket's 'close' listener would call), or null. */
function httpParserFreer() {
  if (freeHttpParser === undefined) {
    try {
      // eslint-disable-next-line global-require
      const common = require('_http_common');
      freeHttpParser = typeof common.freeParser === 'function' ? common.freeParser : null;
    } catch {
      freeHttpParser = null;
    }
  }
  return freeHttpParser;
}

/**
 * Remove every listener of an emitter so nothing of the handler hears about its end, doing first
 * the bookkeeping node's own listeners would have done for an HTTP socket: an http.Agent drops it
 * from its pool ('agentRemove'), and its HTTP parser goes back to node's pool (otherwise the parser
 * would keep the request, and the handler's promises waiting on it, reachable forever).
 */
function silence(emitter) {
  if (typeof emitter.removeAllListeners !== 'function') return;
  if (typeof emitter.listenerCount === 'function' && emitter.listenerCount('agentRemove') > 0) {
    emitter.emit('agentRemove');
  }
  const free = emitter.parser ? httpParserFreer() : null;
  if (free) free(emitter.parser, emitter._httpMessage || null, emitter);
  emitter.removeAllListeners();
  if (typeof emitter.on === 'function') emitter.on('error', noop);
}

/**
 * A Worker handle whose thread has not finished: known from its exit (linked workers), else from
 * its loop start time, a number until the handle closes.
 */
function workerRunning(handle) {
  if (exitedWorkers.has(handle)) return false;
  try {
    return typeof handle.loopStartTime() === 'number';
  } catch {
    return false;
  }
}

/**
 * Replace the global FinalizationRegistry with a subclass whose cleanup callbacks run as the code
 * of the invocation that registered the target, and not at all once that invocation is over (a
 * registration made outside any invocation, at module load, is left alone). V8 runs cleanup
 * callbacks whenever it collected a target, with no async context: without this, a handler could
 * schedule its code to run in a later invocation just by dropping an object.
 */
function installFinalizationRegistry() {
  const Original = globalThis.FinalizationRegistry;
  if (typeof Original !== 'function' || Original.name !== 'FinalizationRegistry' || Original.runnerGuarded) return;

  class Held {
    constructor(work, value) {
      this.work = work;
      this.value = value;
    }
  }

  class FinalizationRegistry extends Original {
    constructor(cleanup) {
      if (typeof cleanup !== 'function') {
        super(cleanup); // the TypeError of the original
        return;
      }
      super((held) => {
        if (!(held instanceof Held)) {
          cleanup(held);
          return;
        }
        if (held.work.over) return; // the invocation that registered it is over: nothing of it runs
        als.run(held.work, () => cleanup(held.value));
      });
    }

    register(target, held, unregisterToken) {
      const work = als.getStore();
      if (!(work instanceof Work) || target === held) return super.register(target, held, unregisterToken);
      return super.register(target, new Held(work, held), unregisterToken);
    }
  }
  Object.defineProperty(FinalizationRegistry, 'runnerGuarded', { value: true });
  Object.defineProperty(globalThis, 'FinalizationRegistry', {
    value: FinalizationRegistry, writable: true, enumerable: false, configurable: true,
  });
}

function describe(resource) {
  const name = resource && resource.constructor && resource.constructor.name;
  return name || typeof resource;
}

module.exports = { Tracker, Work, originalThen };
