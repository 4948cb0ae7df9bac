-- {total, claimed, oldest record or '', newest record or '', delayed} over live messages, in
-- bounded work: counts come from the expiry and claimed indexes (a claimed message
-- always outlives its claim, so every live claim mark is a live message), in O(log n).
-- Expired messages not settled yet are removed first (as the other stores settle the
-- queue first), so that none lies at either end; each end is then found in a window
-- that starts small and doubles, so it costs what it passes over, at most `cap`
-- messages, not `cap` whatever the queue.
-- ARGV: now, cap (bound on expired messages skipped to find each end).
local now, cap = tonumber(ARGV[1]), tonumber(ARGV[2])
local total = redis.call('ZCOUNT', EXPIRY, '(' .. ARGV[1], '+inf')
-- Every message is in the expiry index: those not counted live have expired.
local expired_left = redis.call('ZCARD', EXPIRY) > total
if expired_left then
  local _, more = settle_expired(now, SETTLE_WINDOWS * cap)
  expired_left = more
end
if total == 0 then
  return {0, 0, '', '', 0}
end
local held = redis.call('ZCOUNT', CLAIMED, '(' .. ARGV[1], '+inf')

-- The first live message from the head (or, backwards, from the tail). Windows go by
-- seq, not rank: a record quarantined on the way shifts no later one out of reach.
local function first_live(backwards)
  local bound, seen, size = '-inf', 0, 4
  if backwards then
    bound = '+inf'
  end
  while seen < cap do
    local n = math.min(size, cap - seen)
    local rows
    if backwards then
      rows = redis.call('ZREVRANGEBYSCORE', ORDER, bound, '-inf', 'WITHSCORES', 'LIMIT', 0, n)
    else
      rows = redis.call('ZRANGEBYSCORE', ORDER, bound, '+inf', 'WITHSCORES', 'LIMIT', 0, n)
    end
    for i = 1, #rows, 2 do
      local id = rows[i]
      if not (expired_left and passed_over(id, now, false)) then
        local m, raw = load(id)
        if m and live(m, now) then
          return raw
        end
      end
    end
    if #rows < 2 * n then
      return ''
    end
    seen, size, bound = seen + n, size * 2, '(' .. rows[#rows]
  end
  return ''
end

local delayed = redis.call('ZCOUNT', DELAY_ENDS, '(' .. ARGV[1], '+inf')
return {total, held, first_live(false), first_live(true), delayed}
