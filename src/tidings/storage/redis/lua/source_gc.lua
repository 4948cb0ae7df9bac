-- Remove up to `chunk` expired subscriptions (with their failures) and report the
-- earliest due time still owed, so the caller can re-index this outbox.
-- ARGV: now, chunk. Returns {removed, more ('1'/'0'), earliest due or ''}.
local now, chunk = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', SUB_EXPIRY, '-inf', ARGV[1], 'LIMIT', 0, chunk)
local removed = 0
for _, sid in ipairs(expired) do
  local raw = redis.call('HGET', SUBS, sid)
  if raw then
    local s = cmsgpack.unpack(raw)
    -- Scores are exact, but check the record itself: it is the truth.
    if s[S_EXPIRES] <= now then
      drop_sub(sid, s)
      removed = removed + 1
    end
  else
    redis.call('ZREM', SUB_EXPIRY, sid)
    redis.call('ZREM', SUB_ORDER, sid)
  end
end
local more = 0
if #expired >= chunk then
  more = 1
end
return {removed, more, earliest_due()}
