-- Forget where a queue lives. KEYS: as placement_put.lua. ARGV: queue.
-- Returns 1 when it was placed.
local placements, queues = KEYS[6], KEYS[5]
local placed = redis.call('HGET', placements, ARGV[1])
if not placed then
  return 0
end
redis.call('HDEL', placements, ARGV[1])
if redis.call('HINCRBY', queues, placed, -1) <= 0 then
  redis.call('HDEL', queues, placed)
end
return 1
