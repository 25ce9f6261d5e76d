"""The engine's benchmark harness: `python -m bench [--quick]` (`make bench`). See bench/README.md.

Module path of a run: cli → plan (rows, handlers, durations, targets) → tools (wrk, twilio-run,
py-spy) → measure (per row: servers → loadgen → accounting; coldstart) → report; profiling and
sweep are separate modes of the same pieces.
"""
