-- Remove a pool unless queues are placed on it. KEYS: as pool_put.lua. ARGV: name.
-- Returns how many queues it holds (nothing was removed when that is not 0).
local pools, names, uris, flavors, queues = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local name = ARGV[1]
local old = redis.call('HGET', pools, name)
if not old then
  return 0
end
local held = tonumber(redis.call('HGET', queues, name) or '0')
if held > 0 then
  return held
end
local uri = cmsgpack.unpack(old)[1]
if redis.call('HGET', uris, uri) == name then
  redis.call('HDEL', uris, uri)
end
redis.call('HDEL', pools, name)
redis.call('ZREM', names, name)
redis.call('HDEL', flavors, name)
redis.call('HDEL', queues, name)
return 0
