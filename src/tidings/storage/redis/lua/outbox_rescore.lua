-- Score a source by the earliest due time its take saw ('' when it owes nothing; no
-- source at all to re-score the project only), then its project by its earliest source.
-- KEYS: projects, the project's sources (as outbox_lower.lua). ARGV: project, slot id, head.
local project, slot, head = ARGV[1], ARGV[2], ARGV[3]
if slot ~= '' then
  if head == '' then
    redis.call('ZREM', KEYS[2], slot)
  else
    redis.call('ZADD', KEYS[2], head, slot)
  end
end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('ZREM', KEYS[1], project)
else
  redis.call('ZADD', KEYS[1], first[2], project)
end
return 1
