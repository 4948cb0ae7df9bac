-- Make the outbox index show a source, and its project, due no later than `due`.
-- KEYS: projects (ZSET project -> due), the project's sources (ZSET slot id -> due);
-- both under one hash tag. ARGV: project, slot id, due.
redis.call('ZADD', KEYS[2], 'LT', ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[1], 'LT', ARGV[3], ARGV[1])
return 1
