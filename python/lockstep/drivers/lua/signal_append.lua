-- lockstep signals: append one entry to a signal log, atomically.
--
-- KEYS[1]  the log: a hash with fields
--            first    the oldest retained generation
--            last     the newest generation ever appended (the counter; never reused)
--            e:<gen>  "<ts_us>|<record>" for every retained generation
-- ARGV     record, keep (how many of the newest entries to retain)
-- Returns  {generation, ts_us} (the server's clock, TIME: scripts replicate effects).
local key, record, keep = KEYS[1], ARGV[1], tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local bounds = redis.call('HMGET', key, 'first', 'last')
local first = tonumber(bounds[1] or '1') or 1
local gen = (tonumber(bounds[2] or '0') or 0) + 1
redis.call('HSET', key, 'e:' .. gen, string.format('%.0f', now) .. '|' .. record, 'last', gen)
while gen - first + 1 > keep do
  redis.call('HDEL', key, 'e:' .. first)
  first = first + 1
end
redis.call('HSET', key, 'first', first)
return {gen, now}
