-- ARGV: prefix, agent1, inc1, agent2, inc2, ...  -> {1 or 0 per agent}
-- 0: the record is gone or carries another incarnation (reaped or replaced).
local now = now_ms()
local out = {}
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local f = redis.call('HMGET', rec_key(id), 'inc', 'ttl')
  if f[1] and f[1] == ARGV[i + 1] then
    redis.call('ZADD', BEAT, now, id)
    redis.call('ZADD', DUE, now + tonumber(f[2]), id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
