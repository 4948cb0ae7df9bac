-- Claim up to `limit` claimable messages, oldest first; messages already claimed
-- `dl_max` times leave the queue for the dead-letter outbox instead (the caller then
-- appends them to the dead-letter queue, which lives in another slot, and acks them).
-- ARGV: the metadata token the dead-letter policy was read under ('-': given by the
-- caller), a fresh token, absent ('1': the queue did not exist at that read), now,
-- claim_id, ttl, grace, limit, cap, dl_max (0 = no policy), dl_queue, dl_ttl (0 = keep
-- the message's own).
-- Returns {1, claimed records, outbox entries}, or {0, current token} without claiming
-- when the metadata changed (the caller reads it again).
local changed = metadata_changed(ARGV[1], ARGV[2])
if changed then
  return {0, changed}
end
if ARGV[3] == '1' then
  return {1, {}, {}}
end
local now, claim_id = tonumber(ARGV[4]), ARGV[5]
local ttl, grace, limit, cap = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]),
  tonumber(ARGV[9])
local dl_max, dl_queue, dl_ttl = tonumber(ARGV[10]), ARGV[11], tonumber(ARGV[12])
local claim_expires = now + ttl
local claimed_raw, moved, ids, taken = {}, {}, {}, 0

local function dead_letter(m)
  local new_ttl, expires = m[F_TTL], m[F_EXPIRES]
  if dl_ttl > 0 then
    new_ttl, expires = dl_ttl, now + dl_ttl
  end
  local entry = cmsgpack.pack({dl_queue, m[F_ID], m[F_BODY], new_ttl, m[F_CREATED], expires,
    m[F_CLIENT], m[F_CLAIM_COUNT], now})
  remove(m[F_ID])
  redis.call('HSET', OUTBOX, m[F_ID], entry)
  moved[#moved + 1] = entry
end

local function take(m)
  m[F_EXPIRES], m[F_TTL] = claimed_lifetime(m[F_EXPIRES], m[F_TTL], claim_expires, ttl, grace)
  m[F_CLAIM], m[F_CLAIM_EXPIRES] = claim_id, claim_expires
  m[F_CLAIM_COUNT] = m[F_CLAIM_COUNT] + 1
  claimed_raw[#claimed_raw + 1] = save(m)
  ids[#ids + 1] = m[F_ID]
end

free_walk('0', cap, now, false, function(m)
  if claimable(m, now) then
    taken = taken + 1
    if dl_max > 0 and m[F_CLAIM_COUNT] >= dl_max then
      dead_letter(m)
    else
      take(m)
    end
  end
  return taken >= limit
end)

if #ids > 0 then
  unfile_all(ids)
  redis.call('HSET', CLAIMS, claim_id, cmsgpack.pack({ttl, grace, now, claim_expires, ids}))
  redis.call('ZADD', CLAIM_EXPIRY, num(claim_expires), claim_id)
end
return {1, claimed_raw, moved}
