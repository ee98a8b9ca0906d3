-- Forget an idle resource: its fence counter, its fenced values, its other keys and its
-- index entry. Refused while anyone holds it or waits for it (checked right here).
-- KEYS: the resource's 5 keys (see lease_common.lua), the set of its value keys (see
--       lease_fenced_set.lua), then the namespace's resource index.
-- Returns 1 (forgotten) or 0 (busy: nothing changed but the pruning of expired entries).
index = KEYS[7]
normalize(0)
local _, queued = prune(0)
if redis.call('ZCARD', KEYS[2]) > 0 or queued > 0 then
  touch(0)
  return 0
end
call_each('DEL', KEYS[6], redis.call('SMEMBERS', KEYS[6]), '')
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', index, resource_of(0))
return 1
