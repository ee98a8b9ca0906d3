-- ARGV: prefix, agent, ttl_ms, interval_ms, meta, host, hostid, pid, start, session
-- -> {1, incarnation} or {0, inc, age_ms, ttl_ms, interval_ms, meta, host, hostid, pid, start, session, registered_ms, beat_ms}
local id, ttl = ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local rec = rec_key(id)
if redis.call('EXISTS', rec) == 1 then
  local f = redis.call('HMGET', rec, 'inc', 'ttl', 'iv', 'meta', 'host', 'hid', 'pid', 'st', 'ses', 'reg')
  local beat = tonumber(redis.call('ZSCORE', BEAT, id) or now)
  return {0, f[1], now - beat, f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], beat}
end
local inc = redis.call('INCR', SEQ)
redis.call('HSET', rec, 'inc', inc, 'ttl', ttl, 'iv', ARGV[4], 'meta', ARGV[5], 'host', ARGV[6],
  'hid', ARGV[7], 'pid', ARGV[8], 'st', ARGV[9], 'ses', ARGV[10], 'reg', now)
redis.call('ZADD', BEAT, now, id)
redis.call('ZADD', DUE, now + ttl, id)
redis.call('SADD', HOSTS, ARGV[7])
redis.call('SADD', host_key(ARGV[7]), ARGV[8] .. ':' .. ARGV[9])
redis.call('SADD', proc_key(ARGV[7], ARGV[8], ARGV[9]), id)
return {1, inc}
