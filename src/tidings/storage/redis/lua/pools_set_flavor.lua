-- Set (or clear) the flavor of the named pools that exist. KEYS: as pool_put.lua.
-- ARGV: has flavor ('1'/'0'), flavor, names...
for i = 3, #ARGV do
  local name = ARGV[i]
  if redis.call('HEXISTS', KEYS[1], name) == 1 then
    if ARGV[1] == '1' then
      redis.call('HSET', KEYS[4], name, ARGV[2])
    else
      redis.call('HDEL', KEYS[4], name)
    end
  end
end
return 0
