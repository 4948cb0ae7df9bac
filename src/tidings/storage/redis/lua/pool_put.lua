-- Create or replace a pool. KEYS: pools (HASH name -> msgpack {uri, weight, options
-- JSON}), pool-names (ZSET, lexical), pool-uris (HASH uri -> name), pool-flavors (HASH
-- name -> flavor), pool-queues (HASH name -> placements).
-- ARGV: name, uri, record, has flavor ('1'/'0'), flavor, most pools allowed.
-- Returns {'taken', other pool} when another pool has the URI, {'full'} when a new pool
-- would exceed the limit, {'in_use', queues} when it would move a pool that holds queues
-- to another URI, else {'ok', 1 when created / 0 when replaced}.
local pools, names, uris, flavors, queues = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local name, uri = ARGV[1], ARGV[2]
local owner = redis.call('HGET', uris, uri)
if owner and owner ~= name then
  return {'taken', owner}
end
local old = redis.call('HGET', pools, name)
if not old and redis.call('ZCARD', names) >= tonumber(ARGV[6]) then
  return {'full'}
end
if old then
  local previous = cmsgpack.unpack(old)[1]
  if previous ~= uri then
    local held = tonumber(redis.call('HGET', queues, name) or '0')
    if held > 0 then
      return {'in_use', held}
    end
    redis.call('HDEL', uris, previous)
  end
end
redis.call('HSET', uris, uri, name)
redis.call('HSET', pools, name, ARGV[3])
redis.call('ZADD', names, 0, name)
if ARGV[4] == '1' then
  redis.call('HSET', flavors, name, ARGV[5])
else
  redis.call('HDEL', flavors, name)
end
if old then
  return {'ok', 0}
end
return {'ok', 1}
