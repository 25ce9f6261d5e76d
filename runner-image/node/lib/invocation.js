'use strict';
/**
 * One `invoke`, from the handler call to `done`.
 *
 *   run()       handler(context, event, callback) as the invocation's own code (tracker.run)
 *   callback    first call wins: the invocation is over, leftovers are swept, `result` goes out now
 *   fail()      a throw, a rejected returned promise, an uncaught error before the callback -> 500
 *   wrapUp()    once the handler's code is off the stack: `done` right away when the invocation
 *               left nothing that could run (tracker.quiet), else:
 *   finalize()  one turn later: process listeners restored, final sweep
 *   report()    one more turn (closing handles let go of their objects): verdict, `done`
 *
 * A `result` sent when no handler code is on the stack any more (a load error, a handler that
 * threw) goes out in one write with its `done` when the invocation is quiet.
 */

const { buildReply, errorReply, isError, runnerErrorReply } = require('./reply');
const { encodeFrame, resultFrame } = require('./framing');
const { Work, originalThen } = require('./tracker');
const { removeAllProcessListeners } = require('./process_guard');

// `done.reason` is for an operator's log line, not a dump.
const MAX_REASON_CHARS = 2000;

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * `{...a, ...b}`. Object.assign does the same far faster on Node 20 (whose spread of a JSON-parsed
 * object costs microseconds), except with an own `__proto__` key, which it would set as the prototype.
 */
function merged(a, b) {
  if (Object.hasOwn(a, '__proto__') || Object.hasOwn(b, '__proto__')) return { ...a, ...b };
  return Object.assign({}, a, b);
}

function errorText(err) {
  if (isError(err) || (err && typeof err.stack === 'string')) return err.stack || String(err);
  try {
    return typeof err === 'string' ? err : JSON.stringify(err);
  } catch {
    return String(err);
  }
}

/** The listeners of every event of an emitter, as registered (once-wrappers included). */
function snapshotListeners(emitter) {
  const snapshot = new Map();
  for (const name of emitter.eventNames()) snapshot.set(name, emitter.rawListeners(name));
  return snapshot;
}

function sameListeners(before, now) {
  return before.length === now.length && before.every((fn, i) => fn === now[i]);
}

/** Process listeners are exactly those of snapshot (the usual case: checked without building sets). */
function listenersUnchanged(snapshot) {
  const names = process.eventNames();
  if (names.length !== snapshot.size) return false;
  return names.every((name) => snapshot.has(name) && sameListeners(snapshot.get(name), process.rawListeners(name)));
}

/** Put process listeners back as they were in snapshot (what the handler added goes). */
function restoreProcessListeners(snapshot) {
  if (!listenersUnchanged(snapshot)) {
    const names = new Set([...snapshot.keys(), ...process.eventNames()]);
    for (const name of names) {
      const before = snapshot.get(name) || [];
      if (sameListeners(before, process.rawListeners(name))) continue;
      removeAllProcessListeners(name);
      for (const fn of before) process.on(name, fn);
    }
  }
  if (process.hasUncaughtExceptionCaptureCallback()) process.setUncaughtExceptionCaptureCallback(null);
}

class Invocation {
  constructor(service, message) {
    this.service = service;
    this.id = message.id;
    this.functionName = message.function;
    this.event = isPlainObject(message.event) ? message.event : {};
    this.builtins = isPlainObject(message.context) ? message.context : {};
    this.work = new Work(this.id);
    this.listeners = null;
    this.running = false; // the handler's synchronous code is on the stack
    this.wrapped = false; // wrapUp ran: `done` is sent or scheduled
    this.finalizing = false;
  }

  run() {
    const { service } = this;
    this.listeners = snapshotListeners(process);
    const fn = service.functions.get(this.functionName);
    if (fn === undefined) {
      this.answer(runnerErrorReply(`no function named ${JSON.stringify(this.functionName)} in this service`));
      return;
    }
    if (fn.error) {
      this.answer(runnerErrorReply(fn.error.message, fn.error.name));
      return;
    }
    const { returned, thrown } = this.callHandler(fn.handler);
    let watched = false;
    if (thrown === null) watched = this.watch(returned);
    else this.fail(thrown.err, 'the handler threw'); // after the callback only logged: wrap up below
    if (this.work.over && !this.wrapped) this.wrapUpAfterHandler(watched);
  }

  /** handler(context, event, callback) as the invocation's own code: what it returned, or threw. */
  callHandler(handler) {
    const context = this.context();
    const callback = (error, response) => this.onCallback(error, response);
    let returned;
    let thrown = null;
    this.running = true;
    try {
      this.service.tracker.run(this.work, () => {
        try {
          returned = handler(context, this.event, callback);
        } catch (err) {
          thrown = { err };
        }
      });
    } finally {
      this.running = false;
    }
    return { returned, thrown };
  }

  /**
   * The handler called back during its own code, which is over now. When it returned a promise that
   * is already settled, the reaction watch() queued reports a rejection first: wrap up a microtask later.
   */
  wrapUpAfterHandler(watched) {
    const { tracker } = this.service;
    if (!watched || !tracker.quiet(this.work)) {
      this.wrapUp();
      return;
    }
    tracker.outside(() => queueMicrotask(() => {
      if (!this.wrapped) this.wrapUp();
    }));
  }

  /** invoke.context with init.env laid over it (.env wins), plus getTwilioClient(). */
  context() {
    const { service } = this;
    const context = merged(this.builtins, service.env);
    context.getTwilioClient = service.getTwilioClient;
    return context;
  }

  /** A handler that returns a promise: its rejection before the callback is a 500. True when watched. */
  watch(returned) {
    if (returned === null || (typeof returned !== 'object' && typeof returned !== 'function')) return false;
    let promise = returned;
    if (!(returned instanceof Promise)) {
      let then;
      try {
        then = returned.then;
      } catch {
        return false;
      }
      if (typeof then !== 'function') return false;
      promise = this.service.tracker.run(this.work, () => Promise.resolve(returned));
    }
    this.service.tracker.outside(() => {
      originalThen.call(promise, undefined, (err) => this.fail(err, 'the handler\'s promise rejected'));
    });
    return true;
  }

  onCallback(error, response) {
    if (this.work.over) {
      if (this.service.current === this && !this.finalizing) {
        this.service.sink.emit('warn', 'callback() was called again after the invocation ended; the call is ignored');
      }
      return;
    }
    this.service.tracker.end(this.work);
    const reply = buildReply(error, response, this.service.devMode);
    if (error && (isError(error) || typeof error.stack === 'string')) {
      this.service.sink.emit('error', errorText(error));
    }
    this.send(reply);
  }

  /** The handler failed (throw, rejection, uncaught error): a 500, or a log line once it is over. */
  fail(err, what) {
    const { sink } = this.service;
    if (this.work.over) {
      if (this.service.current === this && !this.finalizing) sink.emit('error', `${what} after the callback: ${errorText(err)}`);
      return;
    }
    sink.emit('error', `${what}: ${errorText(err)}`);
    this.answer(errorReply(isError(err) ? err : normaliseThrown(err), this.service.devMode));
  }

  /** Answer without the handler's callback (errors, load errors, unknown function). */
  answer(reply) {
    this.service.tracker.end(this.work);
    this.send(reply);
  }

  send(reply) {
    const { service } = this;
    let frame;
    try {
      frame = resultFrame(this.id, reply, service.limits.max_response_bytes, service.limits.max_frame_bytes);
    } catch (err) {
      frame = resultFrame(this.id, errorReply(err, service.devMode, 'cannot encode the reply: '),
        service.limits.max_response_bytes, service.limits.max_frame_bytes);
    }
    // Called back from the handler's synchronous code: the reply goes now, whatever the handler
    // still does; run() wraps up once it returns.
    if (this.running) service.channel.sendBytes(frame);
    else this.wrapUp(frame);
  }

  /**
   * After the answer: `done` right away when the invocation is quiet (with a result not sent yet,
   * in the same write), else the result now and the verdict two turns later. Never called while the
   * handler's own synchronous code runs (code after the callback could still start something);
   * any later code of the invocation runs through a resource or promise of it, so is never quiet.
   */
  wrapUp(frame = null) {
    const { service } = this;
    this.wrapped = true;
    if (service.tracker.quiet(this.work)) {
      this.settle();
      if (service.tracker.quiet(this.work)) {
        this.report(frame);
        return;
      }
    }
    if (frame !== null) service.channel.sendBytes(frame);
    // After the handler's synchronous code, sweep what it created after the callback; then two turns
    // of the event loop (finalize, report) before the verdict.
    service.tracker.outside(() => {
      process.nextTick(() => service.tracker.sweep(this.work));
      setImmediate(() => this.finalize());
    });
  }

  /** Put process listeners back and stop what is left. */
  settle() {
    this.finalizing = true;
    try {
      restoreProcessListeners(this.listeners);
      this.service.tracker.sweep(this.work);
    } catch (err) {
      this.work.taints.push(`runner could not stop leftovers: ${err && err.message}`);
    }
  }

  /** First turn after the answer: settle. */
  finalize() {
    this.settle();
    // Handles closed by the sweeps finish closing in this turn's close phase (until then libuv keeps
    // their JS objects, and what those reference, alive): the verdict waits for the next turn.
    setImmediate(() => this.report());
  }

  /** The verdict and `done` (after a result frame not sent yet, in the same write). */
  report(frame = null) {
    const { service } = this;
    let verdict;
    try {
      service.capture.drain();
      verdict = service.tracker.verdict(this.work);
    } catch (err) {
      verdict = { clean: false, reason: `runner could not check for leftovers: ${err && err.message}` };
    }
    if (verdict.reason && verdict.reason.length > MAX_REASON_CHARS) {
      verdict.reason = `${verdict.reason.slice(0, MAX_REASON_CHARS)}...`;
    }
    const dropped = service.sink.end(!verdict.clean);
    const done = encodeFrame({
      type: 'done', id: this.id, clean: verdict.clean, reason: verdict.reason, log_bytes_dropped: dropped,
    }, service.channel.maxFrameBytes);
    service.channel.sendBytes(frame === null ? done : Buffer.concat([frame, done]));
    service.tracker.close(this.work);
    service.finished(this);
  }
}

/** A thrown non-Error (a string, an object) as an Error with the same message. */
function normaliseThrown(value) {
  let message;
  if (typeof value === 'string') message = value;
  else {
    try {
      message = JSON.stringify(value);
    } catch {
      message = String(value);
    }
  }
  const err = new Error(message === undefined ? String(value) : message);
  err.stack = `Error: ${err.message}`;
  return err;
}

module.exports = { Invocation };
