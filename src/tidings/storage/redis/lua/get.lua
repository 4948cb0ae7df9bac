-- Live messages with these ids (claim, delay and echo state ignored).
-- ARGV: now, ids...
local now = tonumber(ARGV[1])
local found = {}
for i = 2, #ARGV do
  local m, raw = load(ARGV[i])
  if m and live(m, now) then
    found[#found + 1] = raw
  end
end
return found
