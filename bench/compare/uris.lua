-- wrk script for bench/compare: GET /obj/0 .. /obj/9999 in turn, so each proxy hashes
-- 10,000 distinct URIs; prints one machine-readable line when done.
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/obj/" .. (n % 10000))
end

done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d errors=%d duration_us=%d p50_us=%d p99_us=%d\n",
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write +
      summary.errors.status + summary.errors.timeout,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
