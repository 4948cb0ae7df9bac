-- Queue names after a marker, in byte order, containing a substring, with metadata.
-- KEYS: names, metadata. ARGV: after ('' = from the start), limit, contains ('' = any),
-- cap (names examined at most).
-- Returns {cursor ('' when the catalog is exhausted), name, metadata, name, ...}.
local after, limit, contains, cap = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local low = '-'
if after ~= '' then
  low = '(' .. after
end
local found, count, examined, cursor = {''}, 0, 0, after

local function visit(name)
  examined = examined + 1
  cursor = name
  if contains == '' or string.find(name, contains, 1, true) then
    found[#found + 1] = name
    found[#found + 1] = redis.call('HGET', KEYS[2], name) or '{}'
    count = count + 1
  end
end

while count < limit and examined < cap do
  local n = math.min(100, cap - examined)
  local names = redis.call('ZRANGEBYLEX', KEYS[1], low, '+', 'LIMIT', 0, n)
  local i = 1
  while i <= #names and count < limit do
    visit(names[i])
    i = i + 1
  end
  if i > #names and #names < n then
    cursor = ''
    break
  end
  low = '(' .. cursor
end
found[1] = cursor
return found
