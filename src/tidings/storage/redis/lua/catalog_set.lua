-- Replace a queue's metadata if the queue exists. KEYS: names, metadata.
-- ARGV: name, metadata. Returns 1 when replaced.
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
