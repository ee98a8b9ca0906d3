-- Retention for one stream that never removes an entry a consumer group still needs.
-- KEYS[1] stream, KEYS[2] where the newest trimmed id is kept (for readers to compare)
-- ARGV[1] max_len (0: no length limit)
-- ARGV[2] min id by age, "ms-0" ("": no age limit)
-- ARGV[3] most entries looked at to find the length cut (the trim catches up over calls)
-- Returns {entries trimmed, 1 if a group held trimming back else 0, the id kept from}.
-- XTRIM does not move the stream's max-deleted-entry-id (XDEL does), so the newest id
-- removed here is recorded in KEYS[2]: a reader whose position is older knows that
-- entries it had not read yet are gone.
--
-- A group needs every entry it has delivered but not acked (its smallest pending id) and
-- every entry it has not read yet (after its last-delivered-id). Trimming by MINID below
-- the smallest such id across groups keeps all of them; XTRIM MAXLEN would not.
local key = KEYS[1]
local max_len = tonumber(ARGV[1])
local age_cut = ARGV[2]
local scan_cap = tonumber(ARGV[3])

if redis.call('EXISTS', key) == 0 then
  return {0, 0, ''}
end

local function parse(id)
  local dash = string.find(id, '-', 1, true)
  if not dash then return tonumber(id), 0 end
  return tonumber(string.sub(id, 1, dash - 1)), tonumber(string.sub(id, dash + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  return am < bm or (am == bm and as < bs)
end
local function after(id)
  local ms, seq = parse(id)
  return string.format('%.0f-%.0f', ms, seq + 1)
end

-- the cut retention asks for
local cut = nil
if age_cut ~= '' then cut = age_cut end
if max_len > 0 then
  local over = redis.call('XLEN', key) - max_len
  if over > 0 then
    local oldest = redis.call('XRANGE', key, '-', '+', 'COUNT', math.min(over, scan_cap))
    local by_len = after(oldest[#oldest][1])
    if cut == nil or less(cut, by_len) then cut = by_len end
  end
end
if cut == nil then
  return {0, 0, ''}
end

-- the oldest entry any group still needs
local keep = nil
for _, flat in ipairs(redis.call('XINFO', 'GROUPS', key)) do
  local info = {}
  for i = 1, #flat, 2 do info[flat[i]] = flat[i + 1] end
  local need
  if tonumber(info['pending']) > 0 then
    need = redis.call('XPENDING', key, info['name'])[2]
  else
    need = after(info['last-delivered-id'])
  end
  if keep == nil or less(need, keep) then keep = need end
end

local held = 0
if keep ~= nil and less(keep, cut) then
  cut = keep
  held = 1
end
local newest = redis.call('XREVRANGE', key, '(' .. cut, '-', 'COUNT', 1)
local trimmed = redis.call('XTRIM', key, 'MINID', cut)
if trimmed > 0 and #newest > 0 then
  local before = redis.call('GET', KEYS[2])
  if not before or less(before, newest[1][1]) then
    redis.call('SET', KEYS[2], newest[1][1])
  end
end
return {trimmed, held, cut}
