-- One pool. KEYS: as pool_put.lua. ARGV: name.
-- Returns {record, flavor (nil when none)}, or nil when there is no such pool.
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then
  return false
end
return {record, redis.call('HGET', KEYS[4], ARGV[1])}
