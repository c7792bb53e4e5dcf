-- PUTs of 256-byte values to distinct keys: thread t's n-th request is wrk/t/n.
local threads = 0
function setup(thread) thread:set("id", threads); threads = threads + 1 end
function init(args) n = 0; value = string.rep("v", 256) end
function request()
  n = n + 1
  return wrk.format("PUT", "/v1/kv/wrk/" .. id .. "/" .. n, {["Content-Type"] = "application/octet-stream"}, value)
end
