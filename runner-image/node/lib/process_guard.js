'use strict';
/**
 * Keeps handlers from ending the worker: process.exit(), process.abort(), process.reallyExit()
 * and process.kill() of the runner itself throw instead. An uncaught throw is a 500 for the
 * invocation in flight, and the worker keeps serving. The runner exits through `realExit`.
 */

const realReallyExit = process.reallyExit.bind(process);
const realKill = process.kill.bind(process);

class ProcessExitError extends Error {
  constructor(what) {
    super(`${what} is not allowed in a function: call callback() to end the invocation`);
    this.name = 'Error';
  }
}

/** End the runner now (no 'exit' event: nothing of the handlers' may run on the way out). */
function realExit(code = 0) {
  realReallyExit(code);
}

/** SIGKILL a process the runner found left behind; false when it is already gone. */
function killProcess(pid) {
  try {
    realKill(pid, 'SIGKILL');
    return true;
  } catch {
    return false;
  }
}

function install() {
  process.exit = function exit(code) {
    throw new ProcessExitError(`process.exit(${code === undefined ? '' : code})`);
  };
  process.reallyExit = function reallyExit(code) {
    throw new ProcessExitError(`process.reallyExit(${code === undefined ? '' : code})`);
  };
  process.abort = function abort() {
    throw new ProcessExitError('process.abort()');
  };
  process.kill = function kill(pid, signal) {
    const target = Number(pid);
    if (target === process.pid || target === 0 || target === -process.pid || target === -1) {
      throw new ProcessExitError(`process.kill(${pid}${signal === undefined ? '' : `, ${JSON.stringify(signal)}`})`);
    }
    return realKill(pid, signal);
  };
}

const { EventEmitter } = require('events');

const kept = []; // [event, listener] pairs of the runner's own that handler code cannot remove

/** Keep `listener` on process `event` whatever a handler removes (removeAllListeners, off...). */
function keepListener(event, listener) {
  kept.push([event, listener]);
  process.on(event, listener);
  if (kept.length > 1) return;
  let restoring = false; // adding a listener emits 'newListener', whose listeners may remove some
  for (const method of ['removeAllListeners', 'removeListener', 'off']) {
    const original = process[method];
    process[method] = function guarded(...args) {
      const result = original.apply(this, args);
      if (restoring) return result;
      restoring = true;
      try {
        for (const [name, fn] of kept) {
          if (!process.listeners(name).includes(fn)) process.on(name, fn);
        }
      } finally {
        restoring = false;
      }
      return result;
    };
  }
}

/** Remove every listener of one process event, the runner's kept ones included (for a restore). */
function removeAllProcessListeners(event) {
  EventEmitter.prototype.removeAllListeners.call(process, event);
}

module.exports = { install, realExit, killProcess, keepListener, removeAllProcessListeners, ProcessExitError };
