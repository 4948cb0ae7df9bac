-- A queue's metadata token (queue_lib.lua), made from ARGV[1] when there is none.
-- KEYS: the token. ARGV: a fresh token, its lifetime in milliseconds.
local token = redis.call('GET', KEYS[1])
if not token then
  token = ARGV[1]
  redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
end
return token
