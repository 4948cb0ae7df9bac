-- Append a batch at the tail of the queue.
-- ARGV: now, client_id, then (id, body, ttl, delay) per message.
local now, client = tonumber(ARGV[1]), ARGV[2]
for i = 3, #ARGV, 4 do
  local ttl, delay = tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local delay_until = 0
  if delay > 0 then
    delay_until = now + delay
  end
  append({ARGV[i], 0, ARGV[i + 1], ttl, now, now + ttl, client, '', 0, 0, delay_until})
end
return 1
