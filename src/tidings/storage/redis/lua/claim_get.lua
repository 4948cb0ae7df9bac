-- The live claim and the messages it still holds: {claim record, {message records}}.
-- ARGV: now, claim_id.
local now, claim_id = tonumber(ARGV[1]), ARGV[2]
local c, raw = load_claim(claim_id, now)
if not c then
  return false
end
local records = {}
for _, pair in ipairs(held_by(claim_id, c, now)) do
  records[#records + 1] = pair[2]
end
return {raw, records}
