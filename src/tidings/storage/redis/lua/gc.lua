-- Remove up to `chunk` expired messages and `chunk` expired claims (unmarking the
-- messages they held), and list outbox entries staged before `stale_before`, which a
-- crashed dead-letter move left behind.
-- ARGV: now, chunk, stale_before. Returns {removed, more ('1'/'0'), stale entries}.
local now, chunk, stale_before = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local removed, more = 0, 0

local expired = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', ARGV[1], 'LIMIT', 0, chunk)
for _, id in ipairs(expired) do
  local m = load(id)
  -- Scores are exact, but check the record itself: it is the truth.
  if not m or not live(m, now) then
    remove(id)
    removed = removed + 1
  end
end

local ended = redis.call('ZRANGEBYSCORE', CLAIM_EXPIRY, '-inf', ARGV[1], 'LIMIT', 0, chunk)
for _, claim_id in ipairs(ended) do
  local raw = redis.call('HGET', CLAIMS, claim_id)
  if raw then
    for _, id in ipairs(cmsgpack.unpack(raw)[C_IDS]) do
      local m = load(id)
      if m and m[F_CLAIM] == claim_id and m[F_CLAIM_EXPIRES] <= now then
        m[F_CLAIM], m[F_CLAIM_EXPIRES] = '', 0
        save(m)
      end
    end
    removed = removed + 1
  end
  redis.call('HDEL', CLAIMS, claim_id)
  redis.call('ZREM', CLAIM_EXPIRY, claim_id)
end

if #expired >= chunk or #ended >= chunk then
  more = 1
end

local stale = {}
local outbox = redis.call('HVALS', OUTBOX)
for _, entry in ipairs(outbox) do
  if cmsgpack.unpack(entry)[9] < stale_before then
    stale[#stale + 1] = entry
  end
end
return {removed, more, stale}
