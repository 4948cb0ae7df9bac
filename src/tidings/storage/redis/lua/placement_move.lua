-- Place a queue on a pool whatever it was on. KEYS: as placement_put.lua.
-- ARGV: queue, pool. Returns 0 when the pool does not exist (nothing changed), else 1.
local placements, queues = KEYS[6], KEYS[5]
local queue, pool = ARGV[1], ARGV[2]
if redis.call('HEXISTS', KEYS[1], pool) == 0 then
  return 0
end
local placed = redis.call('HGET', placements, queue)
if placed == pool then
  return 1
end
if placed and redis.call('HINCRBY', queues, placed, -1) <= 0 then
  redis.call('HDEL', queues, placed)
end
redis.call('HSET', placements, queue, pool)
redis.call('HINCRBY', queues, pool, 1)
return 1
