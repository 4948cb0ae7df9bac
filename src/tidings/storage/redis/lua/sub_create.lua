-- Store a new subscription unless its subscriber already has a live one here.
-- ARGV: now, sid, subscriber, expires, record. Returns {1, record} when stored,
-- {0, record of the live one} otherwise.
local now, sid, subscriber = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local owner = redis.call('HGET', SUBSCRIBERS, subscriber)
if owner then
  local s, raw = load_sub(owner, now)
  if s then
    return {0, raw}
  end
end
redis.call('HSET', SUBS, sid, ARGV[5])
redis.call('ZADD', SUB_ORDER, 0, sid)
redis.call('ZADD', SUB_EXPIRY, ARGV[4], sid)
redis.call('HSET', SUBSCRIBERS, subscriber, sid)
return {1, ARGV[5]}
