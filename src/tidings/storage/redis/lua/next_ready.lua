-- The heads of a queue's time indexes: the earliest claim expiry of a claimed message
-- and the earliest delay end of a delayed one, each '' when the index is empty.
-- KEYS: the queue's claimed and delay-ends keys (queue_lib.lua). An index probe: the
-- entries are not checked, so a lapsed or stray one reads as due (a settle fixes it).
local function head(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if #first == 0 then
    return ''
  end
  return first[2]
end
return {head(KEYS[1]), head(KEYS[2])}
