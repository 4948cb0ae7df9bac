-- Add a queue to its project's catalog unless present. KEYS: names (ZSET, lexical),
-- metadata (HASH name -> JSON). ARGV: name, metadata. Returns 1 when created.
if redis.call('HSETNX', KEYS[2], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return 1
