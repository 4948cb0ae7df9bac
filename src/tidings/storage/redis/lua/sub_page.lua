-- Live subscriptions after a marker, by id. ARGV: now, after ('' = from the start),
-- limit, cap (ids examined at most).
-- Returns {cursor ('' when exhausted), record, record, ...}.
local now, after, limit, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local found, examined, cursor = {''}, 0, after
local low = '-'
if after ~= '' then
  low = '(' .. after
end
while #found - 1 < limit and examined < cap do
  local n = math.min(100, cap - examined)
  local ids = redis.call('ZRANGEBYLEX', SUB_ORDER, low, '+', 'LIMIT', 0, n)
  local i = 1
  while i <= #ids and #found - 1 < limit do
    examined = examined + 1
    cursor = ids[i]
    local _, raw = load_sub(ids[i], now)
    if raw then
      found[#found + 1] = raw
    end
    i = i + 1
  end
  if i > #ids and #ids < n then
    cursor = ''
    break
  end
  low = '(' .. cursor
end
found[1] = cursor
return found
