-- Shared by the benchmark scripts: numbering of threads, per-thread counters
-- and one machine-readable summary line ("BENCH_JSON {...}") for bench/run.py.
local M = {}
local threads = {}

-- setup() runs in wrk's main Lua state once per thread, before init().
function M.setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

-- In a thread: count an outcome ("booked", "refused", "checkout_500", ...).
function M.count(key)
  counts[key] = (counts[key] or 0) + 1
end

-- Read the lines of a data file written by run.py (tokens and ids).
function M.lines(path)
  local out = {}
  for line in io.lines(path) do
    if line ~= "" then table.insert(out, line) end
  end
  return out
end

local function encode(value)
  local kind = type(value)
  if kind == "number" then
    return string.format("%.17g", value)
  elseif kind == "string" then
    return '"' .. value:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
  elseif kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, encode(tostring(k)) .. ":" .. encode(v))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return "null"
end

function M.done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local c = thread:get("counts")
    if type(c) == "table" then
      for k, v in pairs(c) do counts[k] = (counts[k] or 0) + v end
    end
  end
  local out = {
    requests = summary.requests,
    duration_us = summary.duration,
    connect_errors = summary.errors.connect,
    read_errors = summary.errors.read,
    write_errors = summary.errors.write,
    timeouts = summary.errors.timeout,
    status_errors = summary.errors.status,
    p50_us = latency:percentile(50),
    p90_us = latency:percentile(90),
    p99_us = latency:percentile(99),
    max_us = latency.max,
    mean_us = latency.mean,
    counts = counts,
  }
  io.write("BENCH_JSON " .. encode(out) .. "\n")
end

return M
