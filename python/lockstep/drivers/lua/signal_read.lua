-- lockstep signals: read one entry of a signal log and its bounds, in one snapshot.
--
-- KEYS[1]  the log (see signal_append.lua)
-- ARGV[1]  "" for the newest entry, else a generation: the oldest retained one above it
-- Returns  {first, last, gen, "<ts_us>|<record>" or false}
local key = KEYS[1]
local bounds = redis.call('HMGET', key, 'first', 'last')
local first = tonumber(bounds[1] or '1') or 1
local last = tonumber(bounds[2] or '0') or 0
local gen = last
if ARGV[1] ~= '' then
  gen = math.max(tonumber(ARGV[1]) + 1, first)
end
local entry = false
if gen >= first and gen <= last then
  entry = redis.call('HGET', key, 'e:' .. gen)
end
return {first, last, gen, entry}
