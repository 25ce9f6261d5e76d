'use strict';
/**
 * Loads what bootstrap left lazy (the `twilio` package's REST client, jwt, twiml: lib/twilio_lazy.js)
 * while the worker is idle after `ready`.
 *
 * A cold start's first `invoke` arrives right after `ready` and does not wait for these loads; a
 * pre-warmed worker has them done before its first request. The loads run one small step per
 * macrotask (none above ~20 ms), each only when no invocation is in flight or queued and no message
 * arrived for `idleMs`: an `invoke` arriving meanwhile is read (the input stream is polled between
 * steps) and served first, and the preload resumes once the worker is quiet again. A step that
 * fails is dropped: the code that needs the module reports the error when it loads it.
 *
 * Scheduled from runner code only (never from inside an invocation), so its timers belong to no
 * invocation. The environment variable RUNNER_PRELOAD_IDLE_MS (read and removed at start-up by
 * runner.js) sets idleMs; `never` turns the preload off (for tests of the lazy paths).
 */

const DEFAULT_IDLE_MS = 50;

/** idleMs from the environment value: a number >= 0, null for `never`, the default otherwise. */
function idleMsFrom(value) {
  if (value === undefined || value === '') return DEFAULT_IDLE_MS;
  if (value === 'never') return null;
  const ms = Number(value);
  return Number.isFinite(ms) && ms >= 0 ? ms : DEFAULT_IDLE_MS;
}

class Preloader {
  /**
   * `busy()` says whether an invocation is in flight or queued; `lastActivity()` is the
   * performance.now() of the last message or invocation end.
   */
  constructor(steps, { busy, lastActivity, idleMs = DEFAULT_IDLE_MS }) {
    this.steps = steps.slice();
    this.busy = busy;
    this.lastActivity = lastActivity;
    this.idleMs = idleMs;
    this.timer = null;
  }

  get pending() {
    return this.steps.length > 0;
  }

  /** Begin (after `ready`). */
  start() {
    if (this.idleMs === null || !this.pending) return;
    this.later(this.idleMs);
  }

  later(ms) {
    this.timer = setTimeout(() => this.tick(), ms);
    this.timer.unref();
  }

  tick() {
    this.timer = null;
    if (!this.pending) return;
    const quietFor = performance.now() - this.lastActivity();
    if (this.busy() || quietFor < this.idleMs) {
      this.later(Math.max(1, this.idleMs - Math.max(0, quietFor)));
      return;
    }
    const step = this.steps.shift();
    try {
      step();
    } catch {
      // reported by the code that needs it, when it loads it
    }
    // Not unref'd: node polls without blocking only while a ref'd immediate is pending, so an
    // unref'd one would wait for the next input.
    if (this.pending) setImmediate(() => this.tick());
  }
}

module.exports = { Preloader, idleMsFrom, DEFAULT_IDLE_MS };
