-- wrk script of bench/server.sh: POSTs claim files to /v1/submissions, every one distinct.
--
-- Why distinct, and distinct how: blobs are content-addressed (identical bodies would be
-- stored once), and a second file for the same (payer, institution, 請求年月) supersedes the
-- first (its queued checks are dropped), which would spare the check workers. So request i
-- takes body i mod K (K institutions, one token each) and rewrites the IR record's 請求年月
-- (field 8) to its own month from 2021-11 on (the generated receipts are for 2021-10, so no
-- month-order finding appears): every request is a new, valid file that gets checked.
-- With BENCH_SAME_MONTH=1 the IR is left as it is and a trailing record `ZZ,<n>` makes the
-- bytes distinct instead (each file then supersedes the previous one of its institution).
--
-- Environment: BENCH_BODIES (paths, space-separated), BENCH_TOKENS (one per body, same
-- order; empty for the bare endpoint), BENCH_THREADS (= wrk -t), BENCH_DELAY_MS (0: closed
-- loop; d > 0: each connection waits a uniform 0..2d ms before each request, to offer a
-- rate below saturation), BENCH_SAME_MONTH.
-- Prints one `RESULT key=value ...` line at the end (statuses counted by a response hook).

local bodies_env = os.getenv("BENCH_BODIES") or error("BENCH_BODIES is not set")
local tokens_env = os.getenv("BENCH_TOKENS") or ""
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local same_month = os.getenv("BENCH_SAME_MONTH") == "1"

local MONTH0 = 2021 * 12 + 10 -- 2021-11 as months since year 0 (month index 0-based)
local MONTHS = (9999 - 2021) * 12

-- setup() runs in the main Lua state, once per wrk thread.
local threads = {}
local thread_count = 0
function setup(thread)
   thread:set("tid", thread_count)
   thread_count = thread_count + 1
   table.insert(threads, thread)
end

-- Per-thread state (each wrk thread has its own Lua state).
counts = {}
local heads, tails, headers = {}, {}, {}
local nbodies = 0
local n = 0

local function split_ir(body)
   local eol = assert(body:find("\r\n", 1, true), "no CRLF after the IR record")
   local ir, rest = body:sub(1, eol - 1), body:sub(eol)
   local f = {}
   -- CP932 trail bytes are never 0x2C, so splitting the bytes on ',' is safe.
   for x in (ir .. ","):gmatch("([^,]*),") do
      f[#f + 1] = x
   end
   assert(f[1] == "IR" and #f >= 9, "the first record is not an IR record")
   return table.concat(f, ",", 1, 7) .. ",", "," .. table.concat(f, ",", 9) .. rest, body
end

function init(args)
   local toks = {}
   for t in tokens_env:gmatch("%S+") do
      toks[#toks + 1] = t
   end
   for path in bodies_env:gmatch("%S+") do
      local fh = assert(io.open(path, "rb"))
      local b = fh:read("*a")
      fh:close()
      nbodies = nbodies + 1
      local head, tail, whole = split_ir(b)
      if same_month then
         -- Keep the IR; insert `ZZ,<n>` before the trailing EOF byte (0x1A).
         local stripped = whole:gsub("\26$", "")
         heads[nbodies], tails[nbodies] = stripped, "\r\n\26"
      else
         heads[nbodies], tails[nbodies] = head, tail
      end
      local h = { ["Content-Type"] = "application/octet-stream" }
      if toks[nbodies] then
         h["Authorization"] = "Bearer " .. toks[nbodies]
      end
      headers[nbodies] = h
   end
   assert(nbodies > 0, "BENCH_BODIES names no file")
   math.randomseed(1000003 * (tid + 1))
end

function request()
   local idx = tid + n * nthreads
   n = n + 1
   local k = idx % nbodies + 1
   local body
   if same_month then
      body = heads[k] .. "ZZ," .. idx .. tails[k]
   else
      local m = MONTH0 + math.floor(idx / nbodies) % MONTHS
      body = heads[k] .. string.format("%04d%02d", math.floor(m / 12), m % 12 + 1) .. tails[k]
   end
   return wrk.format("POST", "/v1/submissions", headers[k], body)
end

if delay_ms > 0 then
   function delay()
      return math.random(0, 2 * delay_ms)
   end
end

function response(status, headers, body)
   local s = tostring(status)
   counts[s] = (counts[s] or 0) + 1
end

function done(summary, latency, requests)
   local c = {}
   for _, t in ipairs(threads) do
      for s, v in pairs(t:get("counts") or {}) do
         c[s] = (c[s] or 0) + v
      end
   end
   local ok, s503, s429, other = c["202"] or 0, c["503"] or 0, c["429"] or 0, 0
   for s, v in pairs(c) do
      if s ~= "202" and s ~= "503" and s ~= "429" then
         other = other + v
      end
   end
   local secs = summary.duration / 1e6
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d secs=%.2f rps=%.1f ok=%d ok_per_s=%.1f s503=%d s429=%d other=%d " ..
      "p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f mean_ms=%.2f " ..
      "err_connect=%d err_read=%d err_write=%d err_timeout=%d\n",
      summary.requests, secs, summary.requests / secs, ok, ok / secs, s503, s429, other,
      latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
      latency.max / 1000, latency.mean / 1000,
      e.connect, e.read, e.write, e.timeout))
   local list = {}
   for s, v in pairs(c) do
      list[#list + 1] = s .. "=" .. v
   end
   table.sort(list)
   io.write("STATUSES " .. table.concat(list, " ") .. "\n")
end
