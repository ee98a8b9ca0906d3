-- Read-only views. ARGV: prefix, what, ...
--   members: (none)    -> {now_ms, {id, beat_ms, inc, ttl, iv, meta, host, hid, pid, st, ses, reg, owned, leases}, ...}
--   memory:  (none)    -> {bytes, keys}: MEMORY USAGE of every key the indexes know
local what = ARGV[2]
local now = now_ms()
if what == 'members' then
  local out = {now}
  local all = redis.call('ZRANGE', BEAT, 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local id = all[i]
    local f = redis.call('HMGET', rec_key(id), 'inc', 'ttl', 'iv', 'meta', 'host', 'hid', 'pid', 'st', 'ses', 'reg')
    if f[1] then
      local owned = redis.call('ZCOUNT', owned_key(id), '(' .. now, '+inf')
      out[#out + 1] = {id, all[i + 1], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], owned,
        redis.call('HLEN', leases_key(id))}
    end
  end
  return out
elseif what == 'memory' then
  local bytes, keys = 0, 0
  local function measure(key)
    local n = redis.call('MEMORY', 'USAGE', key, 'SAMPLES', 0)
    if n then bytes = bytes + n; keys = keys + 1 end
  end
  for _, key in ipairs({BEAT, DUE, HOSTS, SEQ, LOG}) do measure(key) end
  for _, hid in ipairs(redis.call('SMEMBERS', HOSTS)) do
    measure(host_key(hid))
    for _, proc in ipairs(redis.call('SMEMBERS', host_key(hid))) do
      local sep = string.find(proc, ':', 1, true)
      measure(proc_key(hid, string.sub(proc, 1, sep - 1), string.sub(proc, sep + 1)))
    end
  end
  for _, id in ipairs(redis.call('ZRANGE', BEAT, 0, -1)) do
    measure(rec_key(id)); measure(owned_key(id)); measure(leases_key(id))
    for _, key in ipairs(redis.call('ZRANGE', owned_key(id), 0, -1)) do measure(key) end
  end
  return {bytes, keys}
end
return redis.error_reply('member_read: unknown view ' .. tostring(what))
