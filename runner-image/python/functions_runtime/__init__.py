"""The Python runner for Twilio-Functions-style handlers (docs/protocol.md).

Request path through the modules:
`main` (stdin loop) → `service` (init → loaded functions, one invocation at a time)
→ `invocation` (callback contract) → `aio` (async handlers) → `reply` / `response` / `jsvalues`
(the HTTP reply) → `framing` / `channel` (protocol frames) → `cleanliness` (the `done.clean` proof).
Output: `plumbing` sets up `capture` (fds 1/2) and `streams` (sys.stdout/stderr, logging), which
feed `logsink` (one capped `log` frame per line). What handlers see: `twilio_globals`,
`runtime_api`, `context`, loaded by `loader`; `tracebacks` trims runner frames from their errors.

Only the standard library is imported at start-up; modules that need the `twilio` package are
imported once `init` arrives, so a missing package becomes an `init_error`, not a crash.
"""
