-- wrk script for the bench: sets the request from its arguments and prints one JSON summary line.
--
--   wrk ... -s bench/lua/report.lua URL -- METHOD [FORM_BODY]
--
-- A FORM_BODY is sent as application/x-www-form-urlencoded (a Twilio webhook's POST). No
-- response() callback: defining one makes wrk parse every reply in Lua, and wrk would become the
-- bottleneck. Non-2xx replies are still counted: wrk's errors.status counts statuses >= 400.

function init(args)
  wrk.method = args[1] or "GET"
  if args[2] and #args[2] > 0 then
    wrk.body = args[2]
    wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%.0f,"p90":%.0f,"p99":%.0f,"max":%.0f,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
