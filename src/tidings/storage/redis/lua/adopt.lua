-- Append dead-lettered messages at the tail of this (dead-letter) queue, unclaimed.
-- Idempotent: a message whose id is already here is skipped, so a move interrupted
-- between its two steps can be replayed from the source queue's outbox.
-- ARGV: outbox entries (msgpack {queue, id, body, ttl, created, expires, client,
-- claim_count, staged_at}).
start_layout()
local appended = 0
for i = 1, #ARGV do
  local e = cmsgpack.unpack(ARGV[i])
  if redis.call('HEXISTS', RECORDS, e[2]) == 0 then
    append({e[2], 0, e[3], e[4], e[5], e[6], e[7], '', 0, e[8], 0})
    appended = appended + 1
  end
end
if appended > 0 then
  signal_ready()
end
return 1
