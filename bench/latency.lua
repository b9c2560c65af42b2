-- wrk script for bench/compare.sh: prints the latency percentiles of the responses wrk
-- measured, without the samples wrk adds to them.
--
-- Before it prints its latency (and before `done` runs), wrk 4 "corrects" its histogram for
-- coordinated omission (stats_correct in its src/stats.c): with e = run time / (requests per
-- connection), every sample n >= 2e adds one more sample at each of n - e, n - 2e, ... down
-- to just above e, as if a client sending every e had waited for them. In a closed loop, as
-- compare.sh runs it, that model makes a stall weigh more the more requests/s a target
-- serves: a 5 ms stall adds about 100 samples to a target at 20k requests/s and 50 to one at
-- 10k. So wrk's p99 depends on requests/s as much as on the latencies it measured.
--
-- The correction is exact to undo: for m > e, corrected[m] = measured[m] + corrected[m + e],
-- so measured[m] = corrected[m] - corrected[m + e]. The sum of the measured counts must equal
-- the requests wrk completed, which this checks.
--
-- WRK_CONNECTIONS must name wrk's -c: its `done` does not see it. Prints one line:
--   measured n N requests R p50 US p99 US p99.9 US max US wrk-p99 US
-- or "measured unavailable: REASON".

local function fail(reason)
  io.write("measured unavailable: " .. reason .. "\n")
end

done = function(summary, latency, requests)
  local connections = tonumber(os.getenv("WRK_CONNECTIONS") or "")
  if not connections then
    return fail("WRK_CONNECTIONS is not set")
  end
  local per_connection = math.floor(summary.requests / connections)
  local e = 0
  if per_connection > 0 then
    e = math.floor(summary.duration / per_connection)
  end
  -- latency(i) walks the histogram from its start for each i: bound the work.
  local bins = #latency
  if bins * (latency.max - latency.min) > 2e9 then
    return fail(string.format("histogram too wide (%d values over %d us)", bins, latency.max))
  end
  local count, values = {}, {}
  for i = 1, bins do
    local v, n = latency(i)
    count[v] = n
    values[i] = v
  end
  local measured, total = {}, 0
  for i, v in ipairs(values) do
    local n = count[v]
    if e > 0 and v > e then
      n = n - (count[v + e] or 0)
    end
    measured[i] = n
    total = total + n
  end
  if total ~= summary.requests then
    return fail(string.format("%d samples for %d requests (e %d us)", total, summary.requests, e))
  end
  -- wrk's own rule: the first value whose cumulative count reaches round(p * n + 0.5).
  local function percentile(p)
    local rank = math.floor(p / 100 * total + 0.5 + 0.5)
    local seen = 0
    for i, v in ipairs(values) do
      seen = seen + measured[i]
      if seen >= rank then
        return v
      end
    end
    return 0
  end
  io.write(string.format("measured n %d requests %d p50 %d p99 %d p99.9 %d max %d wrk-p99 %d\n",
    total, summary.requests, percentile(50), percentile(99), percentile(99.9), latency.max,
    latency:percentile(99)))
end
