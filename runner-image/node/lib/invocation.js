'use strict';
/**
 * One `invoke`, from the handler call to `done`.
 *
 *   run()       handler(context, event, callback) as the invocation's own code (tracker.run)
 *   callback    first call wins: the invocation is over, leftovers are swept, `result` goes out now
 *   fail()      a throw, a rejected returned promise, an uncaught error before the callback -> 500
 *   finalize()  one turn later: process listeners restored, final sweep
 *   report()    one more turn (closing handles let go of their objects): verdict, `done`
 */

const { twilioClient } = require('./globals');
const { buildReply, errorReply, isError, runnerErrorReply } = require('./reply');
const { resultFrame } = require('./framing');
const { Work, originalThen } = require('./tracker');
const { removeAllProcessListeners } = require('./process_guard');

// `done.reason` is for an operator's log line, not a dump.
const MAX_REASON_CHARS = 2000;

function isPlainObject(value) {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
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

/** Put process listeners back as they were in snapshot (what the handler added goes). */
function restoreProcessListeners(snapshot) {
  const names = new Set([...snapshot.keys(), ...process.eventNames()]);
  for (const name of names) {
    const before = snapshot.get(name) || [];
    const now = process.rawListeners(name);
    if (before.length === now.length && before.every((fn, i) => fn === now[i])) continue;
    removeAllProcessListeners(name);
    for (const fn of before) process.on(name, fn);
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
    const context = this.context();
    const callback = (error, response) => this.onCallback(error, response);
    let returned;
    service.tracker.run(this.work, () => {
      try {
        returned = fn.handler(context, this.event, callback);
      } catch (err) {
        this.fail(err, 'the handler threw');
      }
    });
    this.watch(returned);
  }

  /** invoke.context with init.env laid over it (.env wins), plus getTwilioClient(). */
  context() {
    const { service } = this;
    const context = { ...this.builtins, ...service.env };
    context.getTwilioClient = (options) => twilioClient(service.twilio, service.env, 'context.getTwilioClient()', options);
    return context;
  }

  /** A handler that returns a promise: its rejection before the callback is a 500. */
  watch(returned) {
    if (returned === null || (typeof returned !== 'object' && typeof returned !== 'function')) return;
    let promise = returned;
    if (!(returned instanceof Promise)) {
      let then;
      try {
        then = returned.then;
      } catch {
        return;
      }
      if (typeof then !== 'function') return;
      promise = this.service.tracker.run(this.work, () => Promise.resolve(returned));
    }
    this.service.tracker.outside(() => {
      originalThen.call(promise, undefined, (err) => this.fail(err, 'the handler\'s promise rejected'));
    });
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
    service.channel.sendBytes(frame);
    // After the handler's synchronous code, sweep what it created after the callback; then two turns
    // of the event loop (finalize, report) before the verdict.
    service.tracker.outside(() => {
      process.nextTick(() => service.tracker.sweep(this.work));
      setImmediate(() => this.finalize());
    });
  }

  /** First turn after the answer: put process listeners back and stop what is left. */
  finalize() {
    const { service } = this;
    this.finalizing = true;
    try {
      restoreProcessListeners(this.listeners);
      service.tracker.sweep(this.work);
    } catch (err) {
      this.work.taints.push(`runner could not stop leftovers: ${err && err.message}`);
    }
    // Handles closed by the sweeps finish closing in this turn's close phase (until then libuv keeps
    // their JS objects, and what those reference, alive): the verdict waits for the next turn.
    setImmediate(() => this.report());
  }

  /** Second turn: the verdict and `done`. */
  report() {
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
    const dropped = service.sink.end();
    service.channel.send({
      type: 'done', id: this.id, clean: verdict.clean, reason: verdict.reason, log_bytes_dropped: dropped,
    });
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
