-- Place a queue on a pool unless it is placed already. KEYS: the pool keys (as
-- pool_put.lua), then the project's placements (HASH queue -> pool). ARGV: queue, pool.
-- Returns the pool the queue is on, or nil when it was not placed and the pool does
-- not exist.
local placements = KEYS[6]
local placed = redis.call('HGET', placements, ARGV[1])
if placed then
  return placed
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then
  return false
end
redis.call('HSET', placements, ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[5], ARGV[2], 1)
return ARGV[2]
