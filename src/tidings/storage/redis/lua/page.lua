-- Live messages after a marker, filtered, in FIFO order: {resume, {records}}, where
-- resume is the seq of the last message examined when the scan's cap ran out before
-- `limit` were found ('' otherwise), the marker to go on from. Without claimed ones
-- this reads the free index (queue_lib.lua), so only the excluded client's messages
-- (and rarely a record the settle has not reached) count toward the cap.
-- ARGV: now, after (seq), limit, cap, exclude_client ('' = none), include_claimed,
-- include_delayed ('1' or '0').
local now, after, limit, cap = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local exclude, with_claimed, with_delayed = ARGV[5], ARGV[6] == '1', ARGV[7] == '1'
local found = {}

local function visit(m, raw)
  if live(m, now)
      and (exclude == '' or m[F_CLIENT] ~= exclude)
      and (with_claimed or not claimed(m, now))
      and (with_delayed or not delayed(m, now)) then
    found[#found + 1] = raw
  end
  return #found >= limit
end

local resume
if with_claimed then
  settle(now, SETTLE_WINDOWS * cap)  -- expired messages leave the order index
  resume = walk({ORDER}, after, '+inf', cap, visit, function(id)
    return passed_over(id, now, false)
  end)
else
  resume = free_walk(after, cap, now, with_delayed, visit)
end
return {resume or '', found}
