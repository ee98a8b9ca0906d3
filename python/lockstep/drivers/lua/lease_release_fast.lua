-- lease_release.lua's first part, run before the shared helpers are made (see the
-- @fast-paths note in lease_common.lua). KEYS and ARGV as in lease_release.lua.

if #KEYS == 6 then
  -- A solo record (see lease_common.lua) is read and deleted in one call; a holders zset
  -- answers GETDEL with an error (WRONGTYPE, nothing deleted), no holders with false.
  local solo = redis.pcall('GETDEL', KEYS[2])
  if type(solo) == 'string' then
    -- Live (it existed), no queue: nothing else to do. No TIME: its existence says live.
    local expires, holder = string.match(solo, '^(%d+)|%d+|([^|]*)|')
    if holder == ARGV[1] then
      return 1
    end
    -- Another token's (a stale retry): put it back as it was. A solo record means no
    -- queue, so that token holds nothing here and waits for nothing.
    redis.call('SET', KEYS[2], solo, 'PXAT', tonumber(expires) - 1)
    return 0
  elseif solo and redis.call('EXISTS', KEYS[3]) == 0 then
    -- A holders zset and no queue (nobody to hand over to): if the token is the only
    -- holder, everything but the fence goes.
    read_clock()
    local hs = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    if #hs == 2 and hs[1] == ARGV[1] then
      expire_after(0, 0, false)
      return tonumber(hs[2]) > now and 1 or 0
    end
  end
end
