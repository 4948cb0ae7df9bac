-- Settle the queue (queue_lib.lua: remove expired messages, free messages whose claim
-- lapsed, ready those whose delay ended), remove up to `chunk` expired claims, go on
-- indexing a queue written before the free index existed, and list up to `chunk`
-- outbox entries staged before `stale_before`, which a crashed dead-letter move left
-- behind. Unreadable records met on the way are quarantined (see queue_lib.lua), never
-- removed with their neighbours.
-- ARGV: now, chunk, stale_before.
-- Returns {removed, more ('1'/'0'), stale entries, records in quarantine}.
local now, chunk, stale_before = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local removed, more, left = settle(now, SETTLE_WINDOWS * chunk)

-- Claim records outlive their marks (settled above, by the index of marks).
local ended = redis.call('ZRANGEBYSCORE', CLAIM_EXPIRY, '-inf', num(now), 'LIMIT', 0, chunk)
for _, claim_id in ipairs(ended) do
  if read_claim(claim_id) then
    removed = removed + 1
  end
  redis.call('HDEL', CLAIMS, claim_id)
  redis.call('ZREM', CLAIM_EXPIRY, claim_id)
end

if indexed_upto(now, left) ~= '+inf' or #ended >= chunk then
  more = true
end

local stale = {}
local scanned = redis.call('HSCAN', OUTBOX, 0, 'COUNT', chunk)[2]
for i = 1, #scanned, 2 do
  local field, entry = scanned[i], scanned[i + 1]
  local e = decode(entry, sane_outbox)
  if not e then
    set_aside('outbox:' .. field, entry)
    redis.call('HDEL', OUTBOX, field)
  elseif e[9] < stale_before then
    stale[#stale + 1] = entry
  end
end
local more_flag = 0
if more then
  more_flag = 1
end
return {removed, more_flag, stale, redis.call('HLEN', QUARANTINE)}
