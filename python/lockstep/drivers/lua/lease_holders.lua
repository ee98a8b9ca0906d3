-- Live holders of one resource: {{owner, fence, ms left}, ...}, oldest grant first.
-- KEYS: the resource's 5 keys (see lease_common.lua).
normalize(0)
local out = {}
local hs = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf', 'WITHSCORES')
for j = 1, #hs, 2 do
  local value = redis.call('HGET', KEYS[5], 'h:' .. hs[j])
  out[#out + 1] = {owner_of(value), fence_of(0, hs[j]) or 0, tonumber(hs[j + 1]) - now}
end
table.sort(out, function(x, y) return x[2] < y[2] end)
return out
