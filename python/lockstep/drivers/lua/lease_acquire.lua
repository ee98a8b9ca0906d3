-- Acquire every resource or none; when busy, join (or stay in) every queue.
-- KEYS: 5 per resource (see lease_common.lua), then the namespace's resource index.
-- ARGV: token, owner, slots, ttl ms, queue ttl ms (0: try once), then one floor per
--       resource: the highest fence the client saw; a counter not above it went
--       backwards and is raised past it (the client is told, and reports the data loss).
-- Returns {1, fences, raised (0-based indices)} or
--         {0, blockers {{index, holder owners, owners ahead}}, retry_in ms (-1: none), queued}.
-- Idempotent by token: a token already holding a resource keeps it and its fence.
local token, owner = ARGV[1], ARGV[2]
local slots, ttl, qttl = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local n = (#KEYS - 1) / 5
-- (lease_acquire_fast.lua ran first: `index` is set.)

-- Waiters ahead of the token on resource b, or nil when it may take a slot (or holds
-- one); its place in line (nil: not in line); whether it holds the resource.
local function ahead_of(b, queued)
  if redis.call('ZSCORE', KEYS[b + 2], token) then return nil, nil, true end
  local free = slots - redis.call('ZCARD', KEYS[b + 2])
  local rank = queued > 0 and redis.call('ZRANK', KEYS[b + 3], token) or nil
  local ahead = rank or queued
  if ahead < free then return nil, rank, false end
  return ahead, rank, false
end

local blocked, in_line, holding = false, {}, {}
for i = 0, n - 1 do
  normalize(i * 5)
  local _, queued = prune(i * 5)
  local ahead, rank, mine = ahead_of(i * 5, queued)
  in_line[i], holding[i] = rank, mine
  if ahead then blocked = true end
end

if not blocked then
  local fences, raised = {}, {}
  for i = 0, n - 1 do
    local b = i * 5
    if holding[i] then
      redis.call('ZADD', KEYS[b + 2], now + ttl, token)
      fences[i + 1] = fence_of(b, token) or 0  -- held already: same grant, fresh expiry
    else
      if in_line[i] then
        redis.call('ZREM', KEYS[b + 3], token)
        redis.call('ZREM', KEYS[b + 4], token)
        redis.call('HDEL', KEYS[b + 5], 'q:' .. token)
      end
      local fence, was_raised = new_fence(b, tonumber(ARGV[6 + i]) or 0)
      if was_raised then raised[#raised + 1] = i end
      redis.call('ZADD', KEYS[b + 2], now + ttl, token)
      redis.call('HSET', KEYS[b + 5], 'slots', slots, 'h:' .. token, string.format('%d|%s', fence, owner))
      fences[i + 1] = fence
    end
    touch(b)
  end
  return {1, fences, raised}
end

for i = 0, n - 1 do
  redis.call('HSET', KEYS[i * 5 + 5], 'slots', slots)
end
if qttl > 0 then
  -- Join every queue together, so two waiters are in the same order in every queue
  -- they share; if an entry had expired, move to the tail of all of them.
  local complete = true
  for i = 0, n - 1 do
    if not in_line[i] and not holding[i] then complete = false end
  end
  for i = 0, n - 1 do
    local b = i * 5
    if complete then
      if in_line[i] then redis.call('ZADD', KEYS[b + 4], now + qttl, token) end
    else
      if in_line[i] then
        redis.call('ZREM', KEYS[b + 3], token)
        redis.call('ZREM', KEYS[b + 4], token)
      end
      if not holding[i] then
        local last = redis.call('ZRANGE', KEYS[b + 3], -1, -1, 'WITHSCORES')
        local seq = (last[2] and tonumber(last[2]) or 0) + 1
        redis.call('ZADD', KEYS[b + 3], seq, token)
        redis.call('ZADD', KEYS[b + 4], now + qttl, token)
        redis.call('HSET', KEYS[b + 5], 'q:' .. token, string.format('%d|%d|%s', ttl, n, owner))
      else
        redis.call('HDEL', KEYS[b + 5], 'q:' .. token)
      end
    end
  end
end

local blockers, soonest = {}, nil
for i = 0, n - 1 do
  local b = i * 5
  touch(b)
  local ahead = ahead_of(b, redis.call('ZCARD', KEYS[b + 3]))
  if ahead then
    local holders, waiting = {}, {}
    local hs = redis.call('ZRANGE', KEYS[b + 2], 0, -1, 'WITHSCORES')
    for j = 1, #hs, 2 do
      holders[#holders + 1] = owner_of(redis.call('HGET', KEYS[b + 5], 'h:' .. hs[j]))
      local t = tonumber(hs[j + 1])
      if not soonest or t < soonest then soonest = t end
    end
    if ahead > 0 then
      for _, ticket in ipairs(redis.call('ZRANGE', KEYS[b + 3], 0, ahead - 1)) do
        waiting[#waiting + 1] = waiter_of(redis.call('HGET', KEYS[b + 5], 'q:' .. ticket))
        local t = tonumber(redis.call('ZSCORE', KEYS[b + 4], ticket))
        if t and (not soonest or t < soonest) then soonest = t end
      end
    end
    if slots - #hs / 2 > 0 then
      -- A slot is free and the waiters ahead are taking it right now: look again in
      -- 50 ms to learn the new holder's expiry rather than sleep on a stale one.
      if not soonest or now + 50 < soonest then soonest = now + 50 end
    end
    blockers[#blockers + 1] = {i, holders, waiting}
  end
end
local retry_in = -1
if soonest then retry_in = math.max(0, soonest - now) end
return {0, blockers, retry_in, qttl > 0 and 1 or 0}
