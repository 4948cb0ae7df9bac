-- Live messages after a marker, filtered, in FIFO order: {resume, {records}}, where
-- resume is the seq of the last message examined when the scan's cap ran out before
-- `limit` were found ('' otherwise), the marker to go on from.
-- ARGV: now, after (seq), limit, cap, exclude_client ('' = none), include_claimed,
-- include_delayed ('1' or '0').
local now, after, limit, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local exclude, with_claimed, with_delayed = ARGV[5], ARGV[6] == '1', ARGV[7] == '1'
local found = {}
local resume = scan(after, cap, now, not with_claimed, function(m, raw)
  if live(m, now)
      and (exclude == '' or m[F_CLIENT] ~= exclude)
      and (with_claimed or not claimed(m, now))
      and (with_delayed or not delayed(m, now)) then
    found[#found + 1] = raw
  end
  return #found >= limit
end)
return {resume or '', found}
