-- ids.lua: wrk script for bench/serve.sh.
--
--   wrk -t2 -c32 -d15s --latency -s bench/lua/ids.lua URL -- IDSFILE [PATHFMT]
--
-- Every request is GET PATHFMT with %s replaced by an id picked at random
-- from IDSFILE (one id a line; blank lines ignored). PATHFMT defaults to
-- /api/v1/buildid/%s; serve.sh also uses /buildid/%s/executable and
-- /buildid/%s/debuginfo. Requests are formatted once per thread in init(),
-- so the per-request Lua cost is one table lookup.
--
-- done() prints one machine-readable line after wrk's own summary:
--   WRK requests=N duration_us=N bytes=N non2xx=N connect=N read=N write=N
--       timeout=N p50_us=N p90_us=N p99_us=N mean_us=N max_us=N
-- non2xx is wrk's "Non-2xx or 3xx responses" count (summary.errors.status).
--
-- WRK_DELAY_MS=N in the environment paces the load: each connection waits
-- N ms (whole milliseconds, wrk's timer) after an answer before its next
-- request, so C connections offer about C * 1000 / (N + latency) requests
-- a second. That measures latency at a given rate instead of at
-- saturation, where a closed loop's tail is its own queue.

local reqs = {}
local nthreads = 0

function setup(thread)
	nthreads = nthreads + 1
	thread:set("tid", nthreads)
end

function init(args)
	local file = args[1]
	if file == nil then
		error("ids.lua: usage: wrk ... -s ids.lua URL -- IDSFILE [PATHFMT]")
	end
	local fmt = args[2] or "/api/v1/buildid/%s"
	for line in io.lines(file) do
		local id = line:match("^%s*(%S+)")
		if id ~= nil then
			reqs[#reqs + 1] = wrk.format("GET", string.format(fmt, id))
		end
	end
	if #reqs == 0 then
		error("ids.lua: no ids in " .. file)
	end
	-- A different sequence per thread (tid is set by setup above).
	math.randomseed(os.time() + 7919 * (tid or 0))
end

local pace = tonumber(os.getenv("WRK_DELAY_MS") or "")
if pace ~= nil then
	function delay()
		return pace
	end
end

function request()
	return reqs[math.random(#reqs)]
end

function done(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		"WRK requests=%d duration_us=%d bytes=%d non2xx=%d connect=%d read=%d write=%d timeout=%d " ..
		"p50_us=%d p90_us=%d p99_us=%d mean_us=%.0f max_us=%d\n",
		summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
		e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
		latency.mean, latency.max))
end
