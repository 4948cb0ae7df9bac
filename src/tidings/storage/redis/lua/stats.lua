-- {total, claimed, oldest record or '', newest record or ''} over live messages.
-- ARGV: now, cap (bound on expired messages skipped to find each end).
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = redis.call('ZCOUNT', EXPIRY, '(' .. ARGV[1], '+inf')
if total == 0 then
  return {0, 0, '', ''}
end
local held = 0
for _, claim_id in ipairs(redis.call('ZRANGEBYSCORE', CLAIM_EXPIRY, '(' .. ARGV[1], '+inf')) do
  local c = load_claim(claim_id, now)
  if c then
    held = held + #held_by(claim_id, c, now)
  end
end

local function first_live(command)
  local ids = redis.call(command, ORDER, 0, cap - 1)
  for _, id in ipairs(ids) do
    local m, raw = load(id)
    if m and live(m, now) then
      return raw
    end
  end
  return ''
end

return {total, held, first_live('ZRANGE'), first_live('ZREVRANGE')}
