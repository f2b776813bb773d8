-- wrk script of bench/http_callbacks.py: one stored callback request per HTTP request.
--
-- wrk -t1 -c16 -d10s -s bench/http_callbacks.lua http://127.0.0.1:PORT -- MODE PREFIX CRED...
--   MODE    json (POST /api/v1/callbacks, HTTP Basic) or mvapi (GET /mvapireq/ callback)
--   PREFIX  digits that start every A-number; a counter per thread follows, so no two
--           requests of a run share an A-number
--   CRED    user:password:basic (basic: base64 of user:password), one per end user;
--           requests take them in turn
-- done() prints "sent N" (requests written, those in flight at the end included), then
-- "completed N", "status_errors N" (answers >= 400), "socket_errors N".

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  prefix = args[2] .. tostring(tid)
  creds = {}
  for i = 3, #args do
    local user, password, basic = args[i]:match("^([^:]+):([^:]+):(.+)$")
    table.insert(creds, {user = user, password = password, basic = "Basic " .. basic})
  end
  sent = 0
end

function request()
  sent = sent + 1
  local cred = creds[(sent % #creds) + 1]
  local anum = prefix .. string.format("%07d", sent)
  if mode == "json" then
    return wrk.format("POST", "/api/v1/callbacks",
                      {["Authorization"] = cred.basic,
                       ["Content-Type"] = "application/json"},
                      '{"anum": "' .. anum .. '", "bnum": "4420111"}')
  end
  return wrk.format("GET", "/mvapireq/?apientry=callback&authid=" .. cred.user
                    .. "&authpwd=" .. cred.password .. "&anum=" .. anum .. "&bnum=4420111")
end

function done(summary, latency, requests)
  -- wrk 4.1 calls request() once on the first thread's state to check it, sending nothing
  local total = -1
  for _, thread in ipairs(threads) do
    total = total + thread:get("sent")
  end
  local e = summary.errors
  io.write(string.format("sent %d\ncompleted %d\nstatus_errors %d\nsocket_errors %d\n",
                         total, summary.requests, e.status,
                         e.connect + e.read + e.write + e.timeout))
  io.write(string.format("duration_us %d\np50_us %d\np99_us %d\n", summary.duration,
                         latency:percentile(50), latency:percentile(99)))
end
