-- Remove up to `chunk` expired subscriptions (with their failures) and report the
-- earliest due time still owed, so the caller can re-index this outbox, and whether
-- the source is now empty (no subscription, nothing owed), so the caller can drop it
-- from the global set of sources.
-- ARGV: now, chunk. Returns {removed, more ('1'/'0'), earliest due or '', empty (1/0)}.
local now, chunk = tonumber(ARGV[1]), tonumber(ARGV[2])
local expired = redis.call('ZRANGEBYSCORE', SUB_EXPIRY, '-inf', ARGV[1], 'LIMIT', 0, chunk)
local removed = 0
for _, sid in ipairs(expired) do
  local raw = redis.call('HGET', SUBS, sid)
  if raw then
    local ok, s = pcall(cmsgpack.unpack, raw)
    if not ok or type(s) ~= 'table' or type(s[S_EXPIRES]) ~= 'number' then
      -- Unreadable: out of the expiry index so that no run trips on it again; the
      -- record stays where an operator can see it.
      redis.call('ZREM', SUB_EXPIRY, sid)
      redis.log(redis.LOG_WARNING, 'tidings: unreadable subscription ' .. sid .. ' in ' .. SUBS)
    elseif s[S_EXPIRES] <= now then
      -- Scores are exact, but check the record itself: it is the truth.
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
local empty = 0
if redis.call('EXISTS', SUBS) == 0 and redis.call('EXISTS', NOTIFY_DUE) == 0 then
  empty = 1
end
return {removed, more, earliest_due(), empty}
