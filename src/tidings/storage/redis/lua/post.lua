-- Append a batch at the tail of the queue and, in the same step, owe every live
-- subscription of the source the audience admits one notification per message, due
-- when the message's delay ends; each body is stored once, not once per subscription.
-- KEYS: the queue's (queue_lib.lua), then the source's (source_lib.lua).
-- ARGV: the metadata token the batch was prepared under, a fresh token, now, client_id,
-- audience ('nobody', 'all' or 'confirmed'), then (id, body, ttl, delay) per message.
-- Returns {1, the earliest due time owed or '' when nothing was}, or {0, current token}
-- without storing anything when the metadata changed (the caller prepares again).
local changed = metadata_changed(ARGV[1], ARGV[2])
if changed then
  return {0, changed}
end
local now, client, audience = tonumber(ARGV[3]), ARGV[4], ARGV[5]
local subs = {}
if audience ~= 'nobody' then
  subs = live_subs(now, audience == 'confirmed')
end
local first_due
start_layout()
for i = 6, #ARGV, 4 do
  local id, body, ttl, delay = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), tonumber(ARGV[i + 3])
  local delay_until = 0
  if delay > 0 then
    delay_until = now + delay
  end
  append({id, 0, body, ttl, now, now + ttl, client, '', 0, 0, delay_until})
  local due = now + delay
  if #subs > 0 then
    keep_body(id, body, #subs)
  end
  for _, sid in ipairs(subs) do
    owe(sid, 'notification', id, false, ttl, delay, due)
  end
  if #subs > 0 and (first_due == nil or due < first_due) then
    first_due = due
  end
end
signal_ready()  -- delayed messages too: a waiter sets its timer from their delay
if first_due then
  return {1, num(first_due)}
end
return {1, ''}
