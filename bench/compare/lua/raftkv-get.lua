-- Linearizable GETs of the keys bench/compare's fill wrote, chosen uniformly.
function request()
  return wrk.format("GET", string.format("/v1/kv/bench/%08d?consistency=linearizable", math.random(0, 9999)))
end
