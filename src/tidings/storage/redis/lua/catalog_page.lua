-- Queue names after a marker, in byte order, that contain a substring and whose
-- metadata contains every needle (storage.rules.metadata_needles: a prefilter, the
-- driver decides), with their metadata.
-- KEYS: names, metadata. ARGV: after ('' = from the start), limit, contains ('' = any),
-- cap (names examined at most), needles...
-- Returns {cursor ('' when the catalog is exhausted, else the last name examined),
-- examined, name, metadata, name, metadata, ...}.
local after, limit, contains, cap = ARGV[1], tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local low = '-'
if after ~= '' then
  low = '(' .. after
end
local found, count, examined, cursor = {'', 0}, 0, 0, after

local function candidate(name)
  if contains ~= '' and not string.find(name, contains, 1, true) then
    return nil
  end
  local raw = redis.call('HGET', KEYS[2], name) or '{}'
  for i = 5, #ARGV do
    if not string.find(raw, ARGV[i], 1, true) then
      return nil
    end
  end
  return raw
end

while count < limit and examined < cap do
  local n = math.min(100, cap - examined)
  local names = redis.call('ZRANGEBYLEX', KEYS[1], low, '+', 'LIMIT', 0, n)
  local i = 1
  while i <= #names and count < limit do
    local name = names[i]
    examined = examined + 1
    cursor = name
    local raw = candidate(name)
    if raw then
      found[#found + 1] = name
      found[#found + 1] = raw
      count = count + 1
    end
    i = i + 1
  end
  if i > #names and #names < n then
    cursor = ''
    break
  end
  low = '(' .. cursor
end
found[1] = cursor
found[2] = examined
return found
