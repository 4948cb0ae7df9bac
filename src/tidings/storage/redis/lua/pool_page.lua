-- Pools after a name, in byte order. KEYS: as pool_put.lua. ARGV: after ('' = from the
-- start), limit. Returns {name, record, flavor (nil when none), name, ...}.
local low = '-'
if ARGV[1] ~= '' then
  low = '(' .. ARGV[1]
end
local found = {}
for _, name in ipairs(redis.call('ZRANGEBYLEX', KEYS[2], low, '+', 'LIMIT', 0, tonumber(ARGV[2]))) do
  found[#found + 1] = name
  found[#found + 1] = redis.call('HGET', KEYS[1], name)
  found[#found + 1] = redis.call('HGET', KEYS[4], name)
end
return found
