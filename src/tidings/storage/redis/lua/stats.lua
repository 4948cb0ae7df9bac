-- {total, claimed, oldest record or '', newest record or ''} over live messages, in
-- bounded work: counts come from the expiry and claimed indexes (a claimed message
-- always outlives its claim, so every live claim mark is a live message).
-- ARGV: now, cap (bound on expired messages skipped to find each end).
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = redis.call('ZCOUNT', EXPIRY, '(' .. ARGV[1], '+inf')
if total == 0 then
  return {0, 0, '', ''}
end
local held = redis.call('ZCOUNT', CLAIMED, '(' .. ARGV[1], '+inf')

local function first_live(command)
  local ids = redis.call(command, ORDER, 0, cap - 1)
  for _, id in ipairs(ids) do
    if not passed_over(id, now, false) then
      local m, raw = load(id)
      if m and live(m, now) then
        return raw
      end
    end
  end
  return ''
end

return {total, held, first_live('ZRANGE'), first_live('ZREVRANGE')}
