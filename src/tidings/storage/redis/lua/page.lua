-- Live messages after a marker, filtered; returns their records in FIFO order.
-- ARGV: now, after (seq), limit, cap, exclude_client ('' = none), include_claimed,
-- include_delayed ('1' or '0').
local now, after, limit, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local exclude, with_claimed, with_delayed = ARGV[5], ARGV[6] == '1', ARGV[7] == '1'
local found = {}
scan(after, cap, now, not with_claimed, function(m, raw)
  if live(m, now)
      and (exclude == '' or m[F_CLIENT] ~= exclude)
      and (with_claimed or not claimed(m, now))
      and (with_delayed or not delayed(m, now)) then
    found[#found + 1] = raw
  end
  return #found >= limit
end)
return found
