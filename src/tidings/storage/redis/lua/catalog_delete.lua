-- Remove a queue from its project's catalog. KEYS: names, metadata. ARGV: name.
-- Returns how many queues the project has left.
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZCARD', KEYS[1])
