-- GCRA on the server's clock: one hash per key, fields cfg (the limit's fingerprint)
-- and tat (theoretical arrival time, microseconds). The same arithmetic as
-- rust/core/src/ratelimit/gcra.rs; every number stays an integer below 2^53.
--
-- KEYS[1]  the key's state hash
-- ARGV     op, fingerprint, emission_us, burst, then per op:
--          acquire|peek: cost        -> {allowed, retry_after_us, remaining, reset_after_us, now_us}
--          lease: min, max, horizon  -> {granted, retry_after_us, token, start_us, end_us, remaining, now_us}
--          refund: token, units      -> {units handed back, now_us}
-- A state written under another configuration: error "LOCKSTEP_CONFIG <its fingerprint>".

local key, op, fp = KEYS[1], ARGV[1], ARGV[2]
local t, burst = tonumber(ARGV[3]), tonumber(ARGV[4])
local tau = burst * t
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local stored = redis.call('HMGET', key, 'cfg', 'tat')
if stored[1] and stored[1] ~= fp then
  return redis.error_reply('LOCKSTEP_CONFIG ' .. stored[1])
end
local tat = tonumber(stored[2] or '0') or 0

-- Numbers go to Redis as '%.0f' text: Lua's default formatting rounds to 14 digits.
local function save(new_tat)
  local ttl = new_tat - now
  if ttl <= 0 then
    redis.call('DEL', key)
    return
  end
  redis.call('HSET', key, 'cfg', fp, 'tat', string.format('%.0f', new_tat))
  redis.call('PEXPIRE', key, string.format('%.0f', math.ceil(ttl / 1000) + 1))
end

if op == 'acquire' or op == 'peek' then
  local cost = tonumber(ARGV[5])
  local base = math.max(tat, now)
  local new_tat = base + cost * t
  local allow_at = new_tat - tau
  if now >= allow_at then
    if op == 'acquire' then
      save(new_tat)
    end
    return {1, 0, math.floor((now + tau - new_tat) / t), new_tat - now, now}
  end
  return {0, allow_at - now, math.max(0, math.floor((now + tau - base) / t)), math.max(0, tat - now), now}
end

if op == 'lease' then
  local min_units, max_units, horizon = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
  local start = math.max(tat, now)
  local reach = now + horizon
  local slots = 0
  if start <= reach then
    slots = math.floor((reach - start) / t) + 1
  end
  if slots < min_units then
    return {0, math.max(1, start + (min_units - 1) * t - reach), 0, 0, 0, 0, now}
  end
  local granted = math.min(slots, max_units)
  -- slack after the block: its holder may place the last slot anywhere within a round trip
  local slack = math.min(t, math.max(1000, math.floor(horizon / 20)))
  local ending = start + granted * t + slack
  save(ending)
  return {granted, 0, ending, start - now, ending - now, 0, now}
end

if op == 'refund' then
  local token, units = tonumber(ARGV[5]), tonumber(ARGV[6])
  if tat ~= token or token <= now or units <= 0 then
    return {0, now}
  end
  local new_tat = math.max(token - units * t, now)
  local back = math.floor((token - new_tat) / t)
  save(token - back * t)
  return {back, now}
end

return redis.error_reply('LOCKSTEP_OP unknown rate-limit op ' .. tostring(op))
