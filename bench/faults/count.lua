-- wrk script for bench/faults and bench/soak: GET /obj/0 .. /obj/9999 in turn and count
-- responses by status; prints one machine-readable line when done.
local n = 0
local threads = {}

setup = function(thread)
  table.insert(threads, thread)
end

init = function(args)
  statuses = {}
end

request = function()
  n = n + 1
  return wrk.format("GET", "/obj/" .. (n % 10000))
end

response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

done = function(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, count in pairs(s) do total[code] = (total[code] or 0) + count end
  end
  local parts = {}
  for code, count in pairs(total) do table.insert(parts, code .. ":" .. count) end
  table.sort(parts)
  io.write(string.format("RESULT requests=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p99_us=%d max_us=%d statuses=%s\n",
    summary.requests, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max,
    table.concat(parts, ",")))
end
