-- Restart a live claim with a new ttl and grace, extending the messages it holds.
-- ARGV: now, claim_id, ttl, grace. Returns 1, or 0 when the claim is not live.
local now, claim_id, ttl, grace = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]),
  tonumber(ARGV[4])
local c = load_claim(claim_id, now)
if not c then
  return 0
end
local claim_expires = now + ttl
local ids = {}
for _, pair in ipairs(held_by(claim_id, c, now)) do
  local m = pair[1]
  m[F_EXPIRES], m[F_TTL] = claimed_lifetime(m[F_EXPIRES], m[F_TTL], claim_expires, ttl, grace)
  m[F_CLAIM_EXPIRES] = claim_expires
  save(m)
  ids[#ids + 1] = m[F_ID]
end
redis.call('HSET', CLAIMS, claim_id, cmsgpack.pack({ttl, grace, now, claim_expires, ids}))
redis.call('ZADD', CLAIM_EXPIRY, num(claim_expires), claim_id)
return 1
