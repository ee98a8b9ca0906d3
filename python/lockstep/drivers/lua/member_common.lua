-- Shared by every member_*.lua script (prepended when loaded). ARGV[1] is the
-- namespace prefix "ls:NS:"; every key is built from it exactly as lockstep.keys does.
-- Time is the server's (TIME), in milliseconds, so every client judges on one clock.
local P = ARGV[1]
local META = P .. '{meta}:agents:'
local BEAT, DUE, HOSTS, SEQ = META .. 'beat', META .. 'due', META .. 'hosts', META .. 'seq'
local LOG = P .. '{meta}:lifecycle'
local LOG_CAP = 1000
local LOG_TTL_MS = 7 * 24 * 3600 * 1000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function rec_key(id) return P .. '{agent:' .. id .. '}' end
local function owned_key(id) return rec_key(id) .. ':owned' end
local function leases_key(id) return rec_key(id) .. ':leases' end
local function host_key(hid) return META .. 'host:' .. hid end
local function proc_key(hid, pid, st) return META .. 'proc:' .. hid .. ':' .. pid .. ':' .. st end

-- The fields of a record a reap needs: inc, ttl, hid, pid, st (nil if absent).
local function fields(id)
  local f = redis.call('HMGET', rec_key(id), 'inc', 'ttl', 'hid', 'pid', 'st')
  if not f[1] then return nil end
  return {inc = tonumber(f[1]), ttl = tonumber(f[2]), hid = f[3], pid = f[4], st = f[5]}
end

local function unlink_process(id, f)
  local pk = proc_key(f.hid, f.pid, f.st)
  redis.call('SREM', pk, id)
  if redis.call('EXISTS', pk) == 0 then
    local hk = host_key(f.hid)
    redis.call('SREM', hk, f.pid .. ':' .. f.st)
    if redis.call('EXISTS', hk) == 0 then redis.call('SREM', HOSTS, f.hid) end
  end
end

-- Remove an agent and exactly the keys its ownership index names; log it when reaped.
-- Returns {id, inc, age_ms or -1, keys_deleted, {token, entry, ...}, reason}.
local function remove(id, f, now, reason, reaper)
  local deleted = 0
  local owned = redis.call('ZRANGE', owned_key(id), 0, -1)
  for i = 1, #owned, 500 do
    deleted = deleted + redis.call('DEL', unpack(owned, i, math.min(i + 499, #owned)))
  end
  local leases = redis.call('HGETALL', leases_key(id))
  local beat = redis.call('ZSCORE', BEAT, id)
  local age = -1
  if beat then age = now - tonumber(beat) end
  redis.call('DEL', rec_key(id), owned_key(id), leases_key(id))
  redis.call('ZREM', BEAT, id)
  redis.call('ZREM', DUE, id)
  unlink_process(id, f)
  if reaper then
    redis.call('LPUSH', LOG, cjson.encode({
      event = 'reaped', agent = id, incarnation = f.inc, reason = reason, reaper = reaper,
      at = now / 1000, keys_deleted = deleted, leases = #leases / 2}))
  end
  return {id, f.inc, age, deleted, leases, reason}
end
