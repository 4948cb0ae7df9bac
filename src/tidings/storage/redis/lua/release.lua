-- End a claim (live or not); its messages become claimable at once. ARGV: claim_id.
local claim_id = ARGV[1]
local c = read_claim(claim_id)
if not c then
  return 0
end
local freed = 0
for _, id in ipairs(c[C_IDS]) do
  local m = load(id)
  if m and m[F_CLAIM] == claim_id then
    free_again(m)
    freed = freed + 1
  end
end
if freed > 0 then
  signal_ready()
end
redis.call('HDEL', CLAIMS, claim_id)
redis.call('ZREM', CLAIM_EXPIRY, claim_id)
return 1
