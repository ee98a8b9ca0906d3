-- Claim corpses: staleness (or the identity of a dead process) is judged here, on the
-- server clock, in the same atomic step that removes them, so two reapers split the
-- dead between them and an agent that heartbeated in between is left alone.
-- ARGV: prefix, mode, reaper ('' for none: a deregistration), then per mode:
--   due:     limit                  silent longer than its own ttl
--   beat:    limit, threshold_ms    silent longer than threshold
--   process: hostid, pid, start     every agent of a process seen dead by the caller
--   agent:   agent, inc, reason     that incarnation: if stale by its ttl (reason 'stale')
--                                   or regardless (any other reason); 'left': deregister
-- -> list of {id, inc, age_ms, keys_deleted, {token, entry, ...}, reason}
local mode, reaper = ARGV[2], ARGV[3]
if reaper == '' then reaper = nil end
local now = now_ms()
local out = {}
local function claim(id, reason)
  local f = fields(id)
  if not f then  -- an index entry without a record: drop it
    redis.call('ZREM', BEAT, id)
    redis.call('ZREM', DUE, id)
    return
  end
  out[#out + 1] = remove(id, f, now, reason, reaper)
end
if mode == 'due' then
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', DUE, '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))) do
    claim(id, 'stale')
  end
elseif mode == 'beat' then
  local bound = now - tonumber(ARGV[5])
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', BEAT, '-inf', '(' .. bound, 'LIMIT', 0, tonumber(ARGV[4]))) do
    claim(id, 'stale')
  end
elseif mode == 'process' then
  local hid, pid, st = ARGV[4], ARGV[5], ARGV[6]
  for _, id in ipairs(redis.call('SMEMBERS', proc_key(hid, pid, st))) do
    local f = fields(id)
    if f and f.hid == hid and f.pid == pid and f.st == st then
      out[#out + 1] = remove(id, f, now, 'process gone', reaper)
    else
      redis.call('SREM', proc_key(hid, pid, st), id)  -- re-registered elsewhere since
    end
  end
  if redis.call('EXISTS', proc_key(hid, pid, st)) == 0 then
    redis.call('SREM', host_key(hid), pid .. ':' .. st)
    if redis.call('EXISTS', host_key(hid)) == 0 then redis.call('SREM', HOSTS, hid) end
  end
elseif mode == 'agent' then
  local id, reason = ARGV[4], ARGV[6]
  local f = fields(id)
  if f and f.inc == tonumber(ARGV[5]) then
    local due = tonumber(redis.call('ZSCORE', DUE, id) or 0)
    if reason ~= 'stale' or due < now then
      if reason == 'left' then reaper = nil end
      out[#out + 1] = remove(id, f, now, reason, reaper)
    end
  end
else
  return redis.error_reply('member_reap: unknown mode ' .. tostring(mode))
end
if reaper and #out > 0 then
  redis.call('LTRIM', LOG, 0, LOG_CAP - 1)
  redis.call('PEXPIRE', LOG, LOG_TTL_MS)  -- a quiet namespace's log goes away by itself
end
return out
