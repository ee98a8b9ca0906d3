-- lockstep leases: shared prelude, prepended to every lease_*.lua script.
--
-- A resource's five keys share one hash tag ({kind:name}); resource i of a script has
-- them at KEYS[b+1] .. KEYS[b+5] with b = 5 * i:
--   +1 fence    string: the last fence granted. No TTL: the resource's permanent footprint.
--   +2 holders  zset token -> expiry (server ms); or, for a lone holder, its solo record
--               (below)
--   +3 queue    zset ticket -> arrival number (FIFO order)
--   +4 qexp     zset ticket -> expiry of the queue entry (server ms)
--   +5 state    hash: slots; h:<token> = "<fence>|<owner>";
--               q:<ticket> = "<ttl ms>|<resources it waits for>|<owner>"
-- Every other key expires 1 s after its last entry, so none outlives its TTL.
-- Time is the server's (TIME; Redis 7 replicates script effects, so TIME is allowed).
-- A script over several resources uses keys of several hash tags: fine on one Redis,
-- refused with CROSSSLOT by Redis Cluster (acquire_many is single-instance for now).
-- Scripts are the hot path: every redis.call costs 1-3 us (a write the most: AOF), so
-- calls that cannot change anything are skipped.
--
-- The solo record: a single-slot lock taken when nobody held or waited for it (the
-- uncontended case) is ONE write besides the fence: its holders key becomes the string
-- "<expiry ms>|<fence>|<token>|<owner>" expiring (PXAT) 1 ms before the lease does, so
-- the key exists exactly while the lease is live (Redis: a key expires once now > its
-- time; a lease once now >= its expiry), and queue, qexp and state do not exist. Its
-- release is one GETDEL. Every other script first turns it into the general form above
-- (normalize), so only the two fast paths know it. Taking and dropping a lone lock so
-- costs 5 redis.calls in all instead of 14 (each 1-3 us of the server's time).
local now = nil

-- The server clock (ms) into `now`. The release fast path needs none: a solo record
-- exists only while its lease is live (Redis judges key expiry on the server clock).
local function read_clock()
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

-- The namespace's index of resources, so `lockstep status` lists leases without scanning
-- the keyspace: a zset "kind:name" -> 0 of every resource that has a fence key, key
-- ls:NS:{meta}:leases. An entry is added when its fence key is made (new_fence) and goes
-- with it, by lease_purge.lua; like the fences it is permanent, so taking and dropping a
-- lock costs the index nothing. A listing looks at every entry's holders and queue.
-- Scripts that make fences pass it as their LAST key and set `index` to it. Its {meta}
-- hash tag is not the resources': one Redis, not Cluster (as membership).
local index = nil

-- "kind:name" of resource b: the hash tag of its keys.
local function resource_of(b)
  return string.match(KEYS[b + 1], '{(.*)}')
end

-- The next fence of resource b, at least floor + 1 (a counter not above the floor the
-- client saw went backwards: it is raised, and `raised` says so). A fence key made here
-- (the first fence, or one raised after a loss) enters the index.
local function new_fence(b, floor)
  local fence, raised = redis.call('INCR', KEYS[b + 1]), false
  if fence <= floor then
    fence, raised = floor + 1, true
    redis.call('SET', KEYS[b + 1], string.format('%d', fence))
  end
  if (fence == 1 or raised) and index then redis.call('ZADD', index, 0, resource_of(b)) end
  return fence, raised
end

-- touch() once the latest expiry among the resource's entries (`last`) and whether it
-- has a queue are known (the fast paths know them without asking).
local function expire_after(b, last, queued)
  if last <= now then
    redis.call('DEL', KEYS[b + 2], KEYS[b + 3], KEYS[b + 4], KEYS[b + 5])
    return
  end
  redis.call('PEXPIRE', KEYS[b + 2], last - now + 1000)
  redis.call('PEXPIRE', KEYS[b + 5], last - now + 1000)
  if queued then
    redis.call('PEXPIRE', KEYS[b + 3], last - now + 1000)
    redis.call('PEXPIRE', KEYS[b + 4], last - now + 1000)
  end
end

-- @fast-paths: a script's fast path (lua/<script>_fast.lua, if any) is put here, before
-- the helpers below: every helper is a closure made on each run, ~0.5 us apiece, which an
-- uncontended acquire or release, answered above, does not need.
if not now then read_clock() end  -- the release fast path did not need it; the rest does

-- redis.call(cmd, key, prefix .. item...) over a list, in chunks (Lua's unpack is bounded).
local function call_each(cmd, key, items, prefix)
  for first = 1, #items, 1000 do
    local chunk = {}
    for j = first, math.min(first + 999, #items) do chunk[#chunk + 1] = prefix .. items[j] end
    redis.call(cmd, key, unpack(chunk))
  end
end

-- Resource b in the general form: a solo record (see the top) becomes a holders zset
-- and a state hash. Every script but the fast paths calls it before looking at b.
local function normalize(b)
  -- A zset answers GETDEL with an error (WRONGTYPE: nothing deleted), no key with false.
  local solo = redis.pcall('GETDEL', KEYS[b + 2])
  if type(solo) ~= 'string' then return end
  local expires, fence, token, owner = string.match(solo, '^(%d+)|(%d+)|([^|]*)|(.*)$')
  redis.call('ZADD', KEYS[b + 2], expires, token)
  redis.call('HSET', KEYS[b + 5], 'slots', 1, 'h:' .. token, fence .. '|' .. owner)
  expire_after(b, tonumber(expires), false)
end

-- Drop expired holders and queue entries. Returns whether any went, and how many
-- waiters are left in line (0: the queue keys need no looking at).
local function prune(b)
  local changed = false
  local gone = redis.call('ZRANGEBYSCORE', KEYS[b + 2], '-inf', now)
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[b + 2], '-inf', now)
    call_each('HDEL', KEYS[b + 5], gone, 'h:')
    changed = true
  end
  local queued = redis.call('ZCARD', KEYS[b + 3])
  if queued > 0 then
    gone = redis.call('ZRANGEBYSCORE', KEYS[b + 4], '-inf', now)
    if #gone > 0 then
      redis.call('ZREMRANGEBYSCORE', KEYS[b + 4], '-inf', now)
      call_each('ZREM', KEYS[b + 3], gone, '')
      call_each('HDEL', KEYS[b + 5], gone, 'q:')
      changed = true
      queued = redis.call('ZCARD', KEYS[b + 3])
    end
  end
  return changed, queued
end

local function slots_of(b)
  return tonumber(redis.call('HGET', KEYS[b + 5], 'slots')) or 1
end

-- Keys other than the fence live until their last entry expires, plus 1 s.
local function touch(b)
  local last = 0
  local top = redis.call('ZRANGE', KEYS[b + 2], -1, -1, 'WITHSCORES')
  if top[2] then last = tonumber(top[2]) end
  local queued = redis.call('ZCARD', KEYS[b + 3]) > 0
  if queued then
    top = redis.call('ZRANGE', KEYS[b + 4], -1, -1, 'WITHSCORES')
    if top[2] and tonumber(top[2]) > last then last = tonumber(top[2]) end
  end
  expire_after(b, last, queued)
end


-- Serve the waiters that can now take a slot (the first `free` in line). A waiter for
-- this one resource is granted it right here, a hand-over: the message carries its fence,
-- so it holds the lock without another round trip. The grant expires with the waiter's
-- queue entry (a few seconds) unless the waiter renews it, so one that died while
-- waiting blocks the lock for seconds, not a whole ttl. A waiter for several resources
-- is only woken (PUBLISH of its ticket): it must take them all itself.
local function hand_over(b, prefix, seen)
  local free = slots_of(b) - redis.call('ZCARD', KEYS[b + 2])
  if free <= 0 then return end
  for _, ticket in ipairs(redis.call('ZRANGE', KEYS[b + 3], 0, free - 1)) do
    if not seen[ticket] then
      seen[ticket] = true
      local channel = prefix .. string.match(ticket, '^[^.]*')
      local ttl, count, owner = string.match(redis.call('HGET', KEYS[b + 5], 'q:' .. ticket) or '', '^(%d+)|(%d+)|(.*)$')
      local entry_expires = tonumber(redis.call('ZSCORE', KEYS[b + 4], ticket))
      if ttl and count == '1' and entry_expires then
        redis.call('ZREM', KEYS[b + 3], ticket)
        redis.call('ZREM', KEYS[b + 4], ticket)
        redis.call('HDEL', KEYS[b + 5], 'q:' .. ticket)
        local fence = new_fence(b, 0)
        redis.call('ZADD', KEYS[b + 2], math.min(now + tonumber(ttl), entry_expires), ticket)
        redis.call('HSET', KEYS[b + 5], 'h:' .. ticket, string.format('%d|%s', fence, owner))
        redis.call('PUBLISH', channel, ticket .. ' ' .. string.format('%d', fence))
      else
        redis.call('PUBLISH', channel, ticket)
      end
    end
  end
end

local function fence_of(b, token)
  local h = redis.call('HGET', KEYS[b + 5], 'h:' .. token)
  return h and tonumber(string.match(h, '^%d+')) or nil
end

local function owner_of(value)
  return value and string.match(value, '^%d+|(.*)$') or '?'
end

local function waiter_of(value)
  return value and string.match(value, '^%d+|%d+|(.*)$') or '?'
end
