-- Hand idle pending entries of a consumer group to one consumer, or dead-letter them.
-- KEYS[1] stream, KEYS[2] dead-letter stream
-- ARGV[1] group, ARGV[2] consumer, ARGV[3] min idle ms, ARGV[4] most entries,
-- ARGV[5] max deliveries, ARGV[6] "1" to write dead letters ("0": ack and drop them)
-- Returns {stream, claimed entries, their delivery counts, deleted ids, dead-lettered ids}.
--
-- An entry delivered max-deliveries times and idle again moves to the dead-letter stream
-- (its fields plus ls-origin, ls-group, ls-deliveries) and is acked, atomically. Pending
-- entries whose stream entry is gone (XDEL, or trimmed by someone else) are reported as
-- deleted, never skipped in silence. XCLAIM with the same min-idle keeps this safe
-- against another consumer acking or claiming meanwhile (all of it runs atomically).
local key, dead = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local idle, count, max_deliveries = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local write_dead = ARGV[6] == '1'

local rows = redis.call('XPENDING', key, group, 'IDLE', idle, '-', '+', count)
local claim, next_count, deleted, dead_ids = {}, {}, {}, {}
for _, row in ipairs(rows) do
  local id, deliveries = row[1], tonumber(row[4])
  if deliveries >= max_deliveries then
    local entry = redis.call('XRANGE', key, id, id)
    if #entry == 0 then
      table.insert(deleted, id)
    else
      if write_dead then
        local fields = entry[1][2]
        table.insert(fields, 'ls-origin'); table.insert(fields, id)
        table.insert(fields, 'ls-group'); table.insert(fields, group)
        table.insert(fields, 'ls-deliveries'); table.insert(fields, tostring(deliveries))
        redis.call('XADD', dead, '*', unpack(fields))
      end
      table.insert(dead_ids, id)
    end
    redis.call('XACK', key, group, id)
  else
    table.insert(claim, id)
    next_count[id] = deliveries + 1
  end
end

local entries, counts = {}, {}
if #claim > 0 then
  entries = redis.call('XCLAIM', key, group, consumer, idle, unpack(claim))
  local present = {}
  for _, entry in ipairs(entries) do
    present[entry[1]] = true
    table.insert(counts, next_count[entry[1]])
  end
  for _, id in ipairs(claim) do
    if not present[id] then table.insert(deleted, id) end
  end
end
return {key, entries, counts, deleted, dead_ids}
