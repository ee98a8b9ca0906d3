-- Renew a batch of leases in one round trip.
-- KEYS: 5 per resource (see lease_common.lua), the resources of each lease in turn,
--       then the namespace's resource index.
-- ARGV: lease count, then per lease: token, ttl ms, resource count.
-- Returns {per lease 1 (renewed) / 0 (not held: nothing changed), run_id or false}.
-- run_id tells the client whether the server restarted since it granted its leases.
local renewed, a, b = {}, 2, 0
index = KEYS[#KEYS]
for l = 1, tonumber(ARGV[1]) do
  local token, ttl, count = ARGV[a], tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  a = a + 3
  local ok = 1
  for r = 0, count - 1 do
    normalize(b + r * 5)
    local score = redis.call('ZSCORE', KEYS[b + r * 5 + 2], token)
    if not score or tonumber(score) <= now then ok = 0 end
  end
  if ok == 1 then
    for r = 0, count - 1 do
      redis.call('ZADD', KEYS[b + r * 5 + 2], 'XX', now + ttl, token)
      touch(b + r * 5)
    end
  end
  renewed[l] = ok
  b = b + count * 5
end
local info = redis.pcall('INFO', 'server')  -- an ACL user without INFO gets false
local run_id = type(info) == 'string' and string.match(info, 'run_id:(%x+)') or false
return {renewed, run_id}
