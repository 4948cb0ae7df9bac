-- Remove and return up to `limit` claimable messages, oldest first.
-- ARGV: now, limit, cap.
local now, limit, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local popped, ids = {}, {}
free_walk('0', cap, now, false, function(m, raw)
  if claimable(m, now) then
    popped[#popped + 1] = raw
    ids[#ids + 1] = m[F_ID]
  end
  return #popped >= limit
end)
remove_all(ids)
return popped
