-- The exact sliding window on the server's clock. The same arithmetic as
-- rust/core/src/ratelimit/window.rs: a log of (expiry, units), merged by expiry.
--
-- KEYS[1]  the key's hash: cfg (fingerprint), n (units logged), x (the latest expiry
--          logged; may stay above the real one after a refund: only TTLs use it), m (at
--          or before the earliest expiry logged: nothing to purge before then), and one
--          field per expiry (its text) holding that entry's units
-- KEYS[2]  the log: a sorted set of expiries (member = score = expiry, microseconds)
-- ARGV     op, fingerprint, limit, period_us, granularity_us, then per op:
--          acquire|peek: cost           -> {allowed, retry_after_us, remaining, reset_after_us, now_us}
--          lease: min, max, lease_us    -> {granted, retry_after_us, token, start_us, end_us, remaining, now_us}
--          refund: token, units         -> {units handed back, now_us}
-- peek writes nothing (it runs under EVALSHA_RO).

local hkey, zkey, op, fp = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local limit, period, g = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

-- Numbers go to Redis as '%.0f' text: Lua's default formatting rounds to 14 digits.
local function text(n)
  return string.format('%.0f', n)
end

-- Rounded up to the granularity, exactly (fmod is exact on doubles).
local function expiry_of(at)
  local raw = at + period
  local r = math.fmod(raw, g)
  if r == 0 then
    return raw
  end
  return raw - r + g
end

-- What an acquire now would log is read with the state (the hot path): an entry of that
-- expiry that is already logged needs no ZADD, and its new units ride on the saving HSET.
local acquire_member = text(expiry_of(now))
local stored = redis.call('HMGET', hkey, 'cfg', 'n', 'x', 'm', acquire_member)
local cfg = stored[1]
if cfg and cfg ~= fp then
  return redis.error_reply('LOCKSTEP_CONFIG ' .. cfg)
end

local used = tonumber(stored[2] or '0') or 0
local latest = tonumber(stored[3] or '0') or 0
local earliest = tonumber(stored[4] or '0') or 0
local extended = false -- whether latest grew, so the keys' TTLs must grow with it
local changed = false
if used > 0 and earliest <= now then -- something may have expired: purge it
  local gone = redis.call('ZRANGEBYSCORE', zkey, '-inf', text(now))
  if #gone > 0 then
    local costs = redis.call('HMGET', hkey, unpack(gone))
    for i = 1, #gone do
      used = used - (tonumber(costs[i]) or 0)
    end
    if op ~= 'peek' then
      redis.call('ZREMRANGEBYSCORE', zkey, '-inf', text(now))
      redis.call('HDEL', hkey, unpack(gone))
    end
  end
  if op ~= 'peek' then
    local first = redis.call('ZRANGE', zkey, 0, 0, 'WITHSCORES')
    earliest = tonumber(first[2] or '0') or 0
    changed = true
  end
end

local function last_expiry()
  if used <= 0 then
    return now
  end
  return math.max(latest, now)
end

-- The earliest expiry at which the live units drop to target or below. Every entry holds
-- at least one unit, so the next live - target entries always suffice: a refusal at the
-- limit reads one entry, not a batch.
local function freed_at(target)
  local live, offset = used, 0
  while live > target do
    local count = math.min(64, live - target)
    local batch = redis.call('ZRANGEBYSCORE', zkey, '(' .. text(now), '+inf', 'LIMIT', offset, count)
    if #batch == 0 then
      return now
    end
    local costs = redis.call('HMGET', hkey, unpack(batch))
    for i = 1, #batch do
      live = live - (tonumber(costs[i]) or 0)
      if live <= target then
        return tonumber(batch[i])
      end
    end
    offset = offset + #batch
  end
  return now
end

local entry = {} -- {member, its new units}: written by save()
-- Log `units` at `expiry`. `had`: the units logged there already (nil: unknown).
local function add(expiry, units, had)
  local member = text(expiry)
  if had == nil then
    redis.call('ZADD', zkey, member, member)
    redis.call('HINCRBY', hkey, member, units)
  else
    if had == 0 then
      redis.call('ZADD', zkey, member, member)
    end
    entry = {member, text(had + units)}
  end
  used = used + units
  if expiry > latest then
    latest = expiry
    extended = true
  end
  if used == units or expiry < earliest then
    earliest = expiry
  end
  changed = true
end

local function save()
  if not changed then
    return
  end
  if used <= 0 then
    redis.call('DEL', hkey, zkey)
    return
  end
  if cfg then
    redis.call('HSET', hkey, 'n', text(used), 'x', text(latest), 'm', text(earliest), unpack(entry))
  else
    redis.call('HSET', hkey, 'cfg', fp, 'n', text(used), 'x', text(latest), 'm', text(earliest), unpack(entry))
  end
  if extended then
    local ttl = text(math.ceil((latest - now) / 1000) + 1)
    redis.call('PEXPIRE', hkey, ttl)
    redis.call('PEXPIRE', zkey, ttl)
  end
end

if op == 'acquire' or op == 'peek' then
  local cost = tonumber(ARGV[6])
  if used + cost <= limit then
    local expiry = expiry_of(now)
    local remaining = limit - used - cost
    local reset = math.max(expiry, last_expiry()) - now
    if op == 'acquire' then
      add(expiry, cost, tonumber(stored[5] or '0') or 0)
      save()
    end
    return {1, 0, remaining, reset, now}
  end
  local retry = math.max(1, freed_at(limit - cost) - now)
  local reset = last_expiry() - now
  save()
  return {0, retry, math.max(0, limit - used), reset, now}
end

if op == 'lease' then
  local min_units, max_units, lease_us = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
  local free = limit - used
  if free < min_units then
    local retry = math.max(1, freed_at(limit - min_units) - now)
    save()
    return {0, retry, 0, 0, 0, math.max(0, free), now}
  end
  local granted = math.min(free, max_units)
  local expiry = expiry_of(now + lease_us)
  add(expiry, granted)
  save()
  return {granted, 0, expiry, 0, lease_us, limit - used, now}
end

if op == 'refund' then
  local token, units = tonumber(ARGV[6]), tonumber(ARGV[7])
  local back = 0
  if token > now and units > 0 then
    local member = text(token)
    local cost = tonumber(redis.call('HGET', hkey, member) or '0') or 0
    back = math.min(units, cost)
    if back > 0 then
      if back == cost then
        redis.call('HDEL', hkey, member)
        redis.call('ZREM', zkey, member)
      else
        redis.call('HINCRBY', hkey, member, -back)
      end
      used = used - back
      changed = true
    end
  end
  save()
  return {back, now}
end

return redis.error_reply('LOCKSTEP_OP unknown rate-limit op ' .. tostring(op))
