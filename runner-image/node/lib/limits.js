'use strict';
/** Per-worker limits the engine sends in `init`, with the protocol's defaults. */

const DEFAULT_LIMITS = Object.freeze({
  // Log text (UTF-8 bytes of `message`) sent per invocation; protects the engine's log pipeline.
  max_log_bytes: 64 * 1024,
  // Reply body size; above it the runner sends `error: "response_too_large"` (the engine answers 502).
  max_response_bytes: 4 * 1024 * 1024,
  // Any runner -> engine line; the engine kills a worker that sends a longer one.
  max_frame_bytes: 8 * 1024 * 1024,
});

/** Read `init.limits`: missing keys keep their defaults, bad values throw naming the key. */
function limitsFromInit(raw) {
  if (raw === undefined || raw === null) return { ...DEFAULT_LIMITS };
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new TypeError(`init.limits must be an object, got ${Array.isArray(raw) ? 'array' : typeof raw}`);
  }
  const limits = { ...DEFAULT_LIMITS };
  for (const key of Object.keys(DEFAULT_LIMITS)) {
    const value = raw[key];
    if (value === undefined || value === null) continue;
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new TypeError(`init.limits.${key} must be a positive integer, got ${JSON.stringify(value)}`);
    }
    limits[key] = value;
  }
  return limits;
}

module.exports = { DEFAULT_LIMITS, limitsFromInit };
