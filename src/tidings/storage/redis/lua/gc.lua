-- Remove up to `chunk` expired messages and `chunk` expired claims, clear up to `chunk`
-- lapsed claim marks, and list up to `chunk` outbox entries staged before
-- `stale_before`, which a crashed dead-letter move left behind. Unreadable records met
-- on the way are quarantined (see queue_lib.lua), never removed with their neighbours.
-- ARGV: now, chunk, stale_before.
-- Returns {removed, more ('1'/'0'), stale entries, records in quarantine}.
local now, chunk, stale_before = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local removed, more = 0, 0

local expired = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', ARGV[1], 'LIMIT', 0, chunk)
for _, id in ipairs(expired) do
  local raw = redis.call('HGET', RECORDS, id)
  local m = load(id)
  -- Scores are exact, but check the record itself: it is the truth.
  if not m then
    if not raw then  -- an index entry without a record (a quarantined one has left)
      remove(id)
    end
  elseif not live(m, now) then
    remove(id)
    removed = removed + 1
  end
end

-- Clear a lapsed claim mark (of `claim_id` only, when given).
local function unmark(id, claim_id)
  local m = load(id)
  if not m or m[F_CLAIM] == '' then
    redis.call('ZREM', CLAIMED, id)
  elseif (claim_id == nil or m[F_CLAIM] == claim_id) and m[F_CLAIM_EXPIRES] <= now then
    m[F_CLAIM], m[F_CLAIM_EXPIRES] = '', 0
    save(m)
  end
end

local ended = redis.call('ZRANGEBYSCORE', CLAIM_EXPIRY, '-inf', ARGV[1], 'LIMIT', 0, chunk)
for _, claim_id in ipairs(ended) do
  local c = read_claim(claim_id)
  if c then
    for _, id in ipairs(c[C_IDS]) do
      unmark(id, claim_id)
    end
    removed = removed + 1
  end
  redis.call('HDEL', CLAIMS, claim_id)
  redis.call('ZREM', CLAIM_EXPIRY, claim_id)
end

-- Marks whose claim record is gone (or was never indexed) lapse here.
local lapsed = redis.call('ZRANGEBYSCORE', CLAIMED, '-inf', ARGV[1], 'LIMIT', 0, chunk)
for _, id in ipairs(lapsed) do
  unmark(id, nil)
end

if #expired >= chunk or #ended >= chunk or #lapsed >= chunk then
  more = 1
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
return {removed, more, stale, redis.call('HLEN', QUARANTINE)}
