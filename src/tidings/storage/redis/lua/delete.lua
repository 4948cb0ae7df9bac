-- Delete one message if rules.check_delete allows it, atomically with the check.
-- ARGV: now, id, has_claim_id ('1' or '0'), claim_id, claim_id_malformed ('1' or '0').
-- Returns {0} when deleted or absent, {1, record, claim_is_live} when refused; the
-- caller then asks rules.check_delete for the error, so wording stays in one place.
local now, id = tonumber(ARGV[1]), ARGV[2]
local has_claim, claim_id, malformed = ARGV[3] == '1', ARGV[4], ARGV[5] == '1'
local m, raw = load(id)
if not m or not live(m, now) then
  return {0}
end
local allowed
if has_claim and malformed then
  allowed = false
elseif not claimed(m, now) then
  allowed = not has_claim
else
  allowed = has_claim and claim_id == m[F_CLAIM]
end
if not allowed then
  local is_live = 0
  if has_claim and not malformed and load_claim(claim_id, now) then
    is_live = 1
  end
  return {1, raw, is_live}
end
remove(id)
return {0}
