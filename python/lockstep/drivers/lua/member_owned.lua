-- Writes checked against the agent's incarnation, on the server, atomically.
-- ARGV: prefix, op, agent, inc, ...
--   put:    key, value, ttl_ms ('' for none)      -> 1 written, 0 not registered
--   delete: key                                   -> {1, existed} or {0}
--   lease:  token, entry                          -> 1 recorded, 0 not registered
--   unlease: token (no incarnation check)         -> 1
local op, id = ARGV[2], ARGV[3]
if op == 'unlease' then
  redis.call('HDEL', leases_key(id), ARGV[5])
  return 1
end
local inc = redis.call('HGET', rec_key(id), 'inc')
if not inc or inc ~= ARGV[4] then
  if op == 'delete' then return {0} end
  return 0
end
if op == 'put' then
  local key, ttl = ARGV[5], ARGV[7]
  local now = now_ms()
  local owned = owned_key(id)
  if ttl == '' then
    redis.call('SET', key, ARGV[6])
    redis.call('ZADD', owned, '+inf', key)
  else
    redis.call('SET', key, ARGV[6], 'PX', ttl)
    redis.call('ZADD', owned, now + tonumber(ttl), key)
  end
  -- entries of keys that have expired since: the index stays bounded
  redis.call('ZREMRANGEBYSCORE', owned, '-inf', '(' .. now)
  return 1
elseif op == 'delete' then
  redis.call('ZREM', owned_key(id), ARGV[5])
  return {1, redis.call('DEL', ARGV[5])}
elseif op == 'lease' then
  redis.call('HSET', leases_key(id), ARGV[5], ARGV[6])
  return 1
end
return redis.error_reply('member_owned: unknown op ' .. tostring(op))
