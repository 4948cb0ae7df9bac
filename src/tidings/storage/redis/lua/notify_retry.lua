-- Make a delivery due again with its new attempt count. ARGV: n, attempts, due.
-- Returns 1, or 0 when the delivery is gone.
local raw = redis.call('HGET', NOTIFY, ARGV[1])
if not raw then
  return 0
end
local d = cmsgpack.unpack(raw)
d[D_ATTEMPTS] = tonumber(ARGV[2])
redis.call('HSET', NOTIFY, ARGV[1], cmsgpack.pack(d))
redis.call('ZADD', NOTIFY_DUE, ARGV[3], ARGV[1])
redis.call('INCR', NOTIFY_SEQ) -- it may now be due sooner than the index says
return 1
