-- Lease up to `limit` due deliveries, earliest first, by pushing their due time to the
-- end of the lease and counting the try (so a delivery whose worker dies still uses up
-- its tries); those whose subscription is gone or expired are dropped instead.
-- ARGV: now, lease, limit, cap (deliveries examined at most).
-- Returns {{n, sid, kind, message id, payload, ttl, delay, attempts, subscriber,
-- options}, ...}, the earliest due time left ('' when none), notify-seq}.
local now, lease, limit, cap = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local leased_until = num(now + lease)
local taken, seen, examined = {}, {}, 0
while #taken < limit and examined < cap do
  local batch = math.min(100, limit - #taken, cap - examined)
  local due = redis.call('ZRANGEBYSCORE', NOTIFY_DUE, '-inf', ARGV[1], 'LIMIT', 0, batch)
  local fresh = 0
  for _, n in ipairs(due) do
    if not seen[n] then -- only a lease that ends by `now` leaves one in range
      seen[n], fresh, examined = true, fresh + 1, examined + 1
      local raw = redis.call('HGET', NOTIFY, n)
      local d = raw and cmsgpack.unpack(raw)
      local s = d and load_sub(d[D_SID], now)
      if s then
        d[D_ATTEMPTS] = d[D_ATTEMPTS] + 1
        redis.call('HSET', NOTIFY, n, cmsgpack.pack(d))
        redis.call('ZADD', NOTIFY_DUE, leased_until, n)
        taken[#taken + 1] = {n, d[D_SID], d[D_KIND], d[D_MESSAGE], payload_of(d), d[D_TTL],
          d[D_DELAY], d[D_ATTEMPTS], s[S_SUBSCRIBER], s[S_OPTIONS]}
      else
        forget(n)
      end
    end
  end
  if fresh == 0 then
    break
  end
end
return {taken, earliest_due(), notify_seq()}
