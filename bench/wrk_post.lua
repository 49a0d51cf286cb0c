-- wrk script: POST the file named by $BENCH_BODY as $BENCH_CONTENT_TYPE on every request.
--
-- Closed loop by default: each connection sends as soon as its last answer came.
-- With $BENCH_RATE (requests/s), a fixed arrival rate: request n is due at n/rate seconds,
-- and whichever connection is free takes the next due slot (wrk's delay() hook). Arrivals
-- keep to the schedule while a connection is free; a slot that finds all of them busy is
-- sent late and counted, because its queueing delay is then missing from the latencies.
--
-- With $BENCH_STEADY=1, response() also notes when each answer came, and done() reports the
-- steady rate: answers after the first burst over the time from the first to the last one.
-- For slow batched requests (CIFAR) that leaves out the start, when no batch has finished.
--
-- done() prints one JSON line: wrk's --latency table has no p95 and human-readable units.
local file = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE")

local ffi = require("ffi")
ffi.cdef([[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock, bench_timespec *now);
]])
local CLOCK_MONOTONIC = 1
local now = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, now)
  return tonumber(now.tv_sec) * 1e3 + tonumber(now.tv_nsec) / 1e6
end

local rate = tonumber(os.getenv("BENCH_RATE") or "")
local BURST_MS = 50 -- answers of one batch leave within a few ms of each other

if rate then
  local start, slot = nil, 0
  late, late_max_ms = 0, 0 -- globals: done() reads them through thread:get()

  function delay()
    local t = now_ms()
    start = start or t
    local due = start + slot * 1e3 / rate
    slot = slot + 1
    local wait = due - t
    if wait < -1 then
      late = late + 1
      late_max_ms = math.max(late_max_ms, -wait)
    end
    return math.max(0, math.floor(wait + 0.5)) -- wrk's timers tick in whole milliseconds
  end
end

if os.getenv("BENCH_STEADY") == "1" then
  answered_ms = {} -- global: done() reads it through thread:get()

  function response(status, headers, body)
    answered_ms[#answered_ms + 1] = now_ms()
  end
end

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

local function steady_rate(times)
  table.sort(times)
  local first, last, burst = times[1], times[#times], 1
  if not first or last - first <= BURST_MS then
    return -1
  end
  while times[burst + 1] - first <= BURST_MS do
    burst = burst + 1
  end
  return (#times - burst) * 1e3 / (last - first)
end

function done(summary, latency, requests)
  local late_total, late_max, times = 0, 0, {}
  for _, thread in ipairs(threads) do
    late_total = late_total + (thread:get("late") or 0)
    late_max = math.max(late_max, thread:get("late_max_ms") or 0)
    for _, t in ipairs(thread:get("answered_ms") or {}) do
      times[#times + 1] = t
    end
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us": %d, "requests": %d, "bytes": %d, "errors": '
      .. '{"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"mean_us": %.1f, "max_us": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, '
      .. '"late": %d, "late_max_ms": %.1f, "steady_rps": %.3f}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    late_total, late_max, steady_rate(times)))
end
