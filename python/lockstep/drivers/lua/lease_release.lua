-- Release by token (idempotent): drop its holds and queue entries, hand over to (or
-- wake) the waiters that can go now (see hand_over in lease_common.lua).
-- KEYS: 5 per resource (see lease_common.lua), then the namespace's resource index.
-- ARGV: token, wake channel prefix.
-- Returns 1 if the token held any of them unexpired, else 0.
local token, prefix = ARGV[1], ARGV[2]
local held, seen = 0, {}
index = KEYS[#KEYS]
for i = 0, (#KEYS - 1) / 5 - 1 do
  local b = i * 5
  normalize(b)
  local changed, queued = prune(b)
  if redis.call('ZREM', KEYS[b + 2], token) == 1 then
    held = 1
    changed = true
  end
  if queued > 0 and redis.call('ZREM', KEYS[b + 3], token) == 1 then
    redis.call('ZREM', KEYS[b + 4], token)
    queued = queued - 1
    changed = true
  end
  redis.call('HDEL', KEYS[b + 5], 'h:' .. token, 'q:' .. token)
  if changed and queued > 0 then hand_over(b, prefix, seen) end
  touch(b)
end
return held
