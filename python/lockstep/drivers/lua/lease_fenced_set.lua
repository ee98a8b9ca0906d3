-- Write a value only if the token holds the resource unexpired with this fence and,
-- for one slot, the fence is still the resource's latest.
-- KEYS: the resource's 5 keys (see lease_common.lua), the value key, then the set of the
--       resource's value keys (so lease_purge.lua finds them without a scan).
-- ARGV: token, fence, value. Returns 1 (written) or 0 (refused, nothing written).
local token, fence = ARGV[1], tonumber(ARGV[2])
normalize(0)
local score = redis.call('ZSCORE', KEYS[2], token)
if not score or tonumber(score) <= now then return 0 end
if fence_of(0, token) ~= fence then return 0 end
if slots_of(0) == 1 and (tonumber(redis.call('GET', KEYS[1])) or 0) ~= fence then return 0 end
redis.call('SET', KEYS[6], ARGV[3])
redis.call('SADD', KEYS[7], KEYS[6])
return 1
