-- Move a delivery to its subscription's failures, keeping the newest `keep` of them
-- (none is kept for a subscription that no longer exists).
-- ARGV: n, sid, failure (msgpack {kind, message id, attempts, error, failed}), keep.
local n, sid, keep = ARGV[1], ARGV[2], tonumber(ARGV[4])
forget(n)
if redis.call('HEXISTS', SUBS, sid) == 0 then
  return 0
end
local counter = redis.call('INCR', NOTIFY_SEQ)
local order = string.format('%015.0f', FAIL_SPAN - counter)
redis.call('ZADD', FAILURES, 0, sid .. '|' .. order .. '|' .. ARGV[3])
local low, high = failure_range(sid)
local count = redis.call('ZLEXCOUNT', FAILURES, low, high)
if count > keep then
  for _, old in ipairs(redis.call('ZRANGEBYLEX', FAILURES, low, high, 'LIMIT', keep, count - keep)) do
    redis.call('ZREM', FAILURES, old)
  end
end
return 1
