-- Forget a delivery. ARGV: n.
redis.call('HDEL', NOTIFY, ARGV[1])
redis.call('ZREM', NOTIFY_DUE, ARGV[1])
return 1
