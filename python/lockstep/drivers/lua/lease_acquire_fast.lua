-- lease_acquire.lua's first part, run before the shared helpers are made (see the
-- @fast-paths note in lease_common.lua): the uncontended grant.
-- KEYS and ARGV as in lease_acquire.lua.
index = KEYS[#KEYS]
read_clock()

-- The fast path: one resource that nobody holds or waits for (an uncontended lock), so
-- nothing to prune or check: the general path below would do the same in more calls.
if #KEYS == 6 and redis.call('EXISTS', KEYS[2], KEYS[3], KEYS[4], KEYS[5]) == 0 then
  local fence, raised = new_fence(0, tonumber(ARGV[6]) or 0)
  local token, ttl = ARGV[1], tonumber(ARGV[4])
  if tonumber(ARGV[3]) == 1 and ttl > 1 and not string.find(token, '|', 1, true) then
    -- A lock: the solo record (see lease_common.lua), one write.
    local record = string.format('%d|%d|%s|%s', now + ttl, fence, token, ARGV[2])
    redis.call('SET', KEYS[2], record, 'PXAT', now + ttl - 1)
  else
    redis.call('ZADD', KEYS[2], now + ttl, token)
    redis.call('HSET', KEYS[5], 'slots', ARGV[3], 'h:' .. token, string.format('%d|%s', fence, ARGV[2]))
    expire_after(0, now + ttl, false)
  end
  return {1, {fence}, raised and {0} or {}}
end
