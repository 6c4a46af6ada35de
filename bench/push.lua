-- wrk script for bench/push: a realistic deviceDataChanged body (platform
-- style: compact JSON, null fields present) for 1000 different device ids,
-- and a count of 200 answers so the script can compare them with the
-- messages the subscriber received.
local counter = 0
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  ok = 0
  other = 0
end

local fmt = '{"notifyType":"deviceDataChanged","deviceId":"%08d-495f-48ff-95b1-177855ce5c69",' ..
  '"gatewayId":"%08d-495f-48ff-95b1-177855ce5c69","requestId":null,"service":{"serviceId":"WaterMeter",' ..
  '"serviceType":"WaterMeter","data":{"MessageType":"UPLOAD","Battery":"%d","Flow":%d.%02d,' ..
  '"Pressure":"0.4%d"},"eventTime":"20261126T101500Z"}}'

function request()
  counter = counter + 1
  local dev = counter % 1000
  local body = string.format(fmt, dev, dev, counter % 100, counter % 997, counter % 100, counter % 10)
  return wrk.format("POST", wrk.path, {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local o, n = 0, 0
  for _, t in ipairs(threads) do
    o = o + t:get("ok")
    n = n + t:get("other")
  end
  io.write(string.format("push_200=%d push_other=%d\n", o, n))
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n", latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
