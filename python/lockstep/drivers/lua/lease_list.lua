-- List resources: each one's live holders and queue (the index keeps every resource
-- with a fence; the idle ones are left out here).
-- KEYS: 5 per resource (see lease_common.lua), then the namespace's resource index.
-- Returns, for each resource someone holds or waits for:
--   {"kind:name", slots, last fence, {{token, owner, fence, ms left}, ...} (lowest fence
--    first), {{ticket, owner, ms left}, ...} (first in line first)}
index = KEYS[#KEYS]
local out = {}
for i = 0, (#KEYS - 1) / 5 - 1 do
  local b = i * 5
  normalize(b)
  local holders, waiters = {}, {}
  local hs = redis.call('ZRANGEBYSCORE', KEYS[b + 2], '(' .. now, '+inf', 'WITHSCORES')
  for j = 1, #hs, 2 do
    local value = redis.call('HGET', KEYS[b + 5], 'h:' .. hs[j])
    holders[#holders + 1] = {hs[j], owner_of(value), fence_of(b, hs[j]) or 0, tonumber(hs[j + 1]) - now}
  end
  table.sort(holders, function(x, y) return x[3] < y[3] end)
  for _, ticket in ipairs(redis.call('ZRANGE', KEYS[b + 3], 0, -1)) do
    local expires = tonumber(redis.call('ZSCORE', KEYS[b + 4], ticket))
    if expires and expires > now then
      waiters[#waiters + 1] = {ticket, waiter_of(redis.call('HGET', KEYS[b + 5], 'q:' .. ticket)), expires - now}
    end
  end
  if #holders + #waiters > 0 then
    out[#out + 1] = {resource_of(b), slots_of(b), tonumber(redis.call('GET', KEYS[b + 1])) or 0, holders, waiters}
  end
end
return out
