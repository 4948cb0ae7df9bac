-- Replace a live subscription's record with one built from it (rules.changed_subscription)
-- if it is still the record the caller read, keeping subscribers unique.
-- ARGV: now, sid, record read, new record.
-- Returns 1 when replaced, 0 when not live, -1 when it changed since it was read (read
-- again and retry), -2 when another live subscription has the new subscriber.
local now, sid = tonumber(ARGV[1]), ARGV[2]
local raw = redis.call('HGET', SUBS, sid)
if not raw then
  return 0
end
if raw ~= ARGV[3] then
  return -1
end
local s = cmsgpack.unpack(raw)
if s[S_EXPIRES] <= now then
  return 0
end
local new = cmsgpack.unpack(ARGV[4])
if new[S_SUBSCRIBER] ~= s[S_SUBSCRIBER] then
  local owner = redis.call('HGET', SUBSCRIBERS, new[S_SUBSCRIBER])
  if owner and owner ~= sid and load_sub(owner, now) then
    return -2
  end
  redis.call('HSET', SUBSCRIBERS, new[S_SUBSCRIBER], sid)
  if redis.call('HGET', SUBSCRIBERS, s[S_SUBSCRIBER]) == sid then
    redis.call('HDEL', SUBSCRIBERS, s[S_SUBSCRIBER])
  end
end
redis.call('HSET', SUBS, sid, ARGV[4])
redis.call('ZADD', SUB_EXPIRY, num(new[S_EXPIRES]), sid)
return 1
