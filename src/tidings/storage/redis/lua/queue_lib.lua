-- Shared prelude of every per-queue script (prepended at load time, after common.lua).
--
-- KEYS (all under the queue's hash tag, so one script touches one slot):
--   1 seq      counter (INCR) giving each message its FIFO position and marker
--   2 order    ZSET id -> seq
--   3 records  HASH id -> msgpack message record (see F_* below)
--   4 expiry   ZSET id -> expires (lets GC find expired messages without scanning)
--   5 claims   HASH claim id -> msgpack {ttl, grace, updated, expires, {ids}}
--   6 cexpiry  ZSET claim id -> expires
--   7 outbox   HASH id -> msgpack dead-letter move not yet applied to its target queue
-- Times are POSIX seconds passed by the caller; the Redis clock is never read.

local SEQ, ORDER, RECORDS, EXPIRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local CLAIMS, CLAIM_EXPIRY, OUTBOX = KEYS[5], KEYS[6], KEYS[7]

local F_ID, F_SEQ, F_BODY, F_TTL, F_CREATED, F_EXPIRES = 1, 2, 3, 4, 5, 6
local F_CLIENT, F_CLAIM, F_CLAIM_EXPIRES, F_CLAIM_COUNT, F_DELAY = 7, 8, 9, 10, 11

local C_TTL, C_GRACE, C_UPDATED, C_EXPIRES, C_IDS = 1, 2, 3, 4, 5

local function load(id)
  local raw = redis.call('HGET', RECORDS, id)
  if not raw then
    return nil, nil
  end
  return cmsgpack.unpack(raw), raw
end

local function save(m)
  local raw = cmsgpack.pack(m)
  redis.call('HSET', RECORDS, m[F_ID], raw)
  redis.call('ZADD', EXPIRY, num(m[F_EXPIRES]), m[F_ID])
  return raw
end

local function remove(id)
  redis.call('HDEL', RECORDS, id)
  redis.call('ZREM', ORDER, id)
  redis.call('ZREM', EXPIRY, id)
end

local function append(m)
  m[F_SEQ] = redis.call('INCR', SEQ)
  redis.call('ZADD', ORDER, m[F_SEQ], m[F_ID])
  return save(m)
end

local function live(m, now)
  return m[F_EXPIRES] > now
end

-- Message.claimed
local function claimed(m, now)
  return m[F_CLAIM] ~= '' and m[F_CLAIM_EXPIRES] > now
end

local function delayed(m, now)
  return m[F_DELAY] > now
end

local function claimable(m, now)
  return live(m, now) and not claimed(m, now) and not delayed(m, now)
end

-- rules.claimed_lifetime: a claimed message outlives its claim by grace.
local function claimed_lifetime(expires, ttl, claim_expires, claim_ttl, grace)
  if expires < claim_expires then
    return claim_expires + grace, claim_ttl + grace
  end
  return expires, ttl
end

local function load_claim(claim_id, now)
  local raw = redis.call('HGET', CLAIMS, claim_id)
  if not raw then
    return nil, nil
  end
  local c = cmsgpack.unpack(raw)
  if c[C_EXPIRES] <= now then
    return nil, nil
  end
  return c, raw
end


-- Calls visit(m, raw) for messages after seq `after` in FIFO order until it returns
-- true or `cap` messages were examined, so one call never blocks Redis for long.
-- visit may remove the message it is given.
local function scan(after, cap, visit)
  local examined = 0
  local low = '(' .. after
  while examined < cap do
    local n = math.min(100, cap - examined)
    local rows = redis.call('ZRANGEBYSCORE', ORDER, low, '+inf', 'WITHSCORES', 'LIMIT', 0, n)
    for i = 1, #rows, 2 do
      examined = examined + 1
      local m, raw = load(rows[i])
      if m and visit(m, raw) then
        return
      end
    end
    if #rows < 2 * n then
      return
    end
    low = '(' .. rows[#rows]
  end
end

-- Messages a claim still holds: claimed by it, and the claim and message both live.
local function held_by(claim_id, c, now)
  local held = {}
  for _, id in ipairs(c[C_IDS]) do
    local m, raw = load(id)
    if m and m[F_CLAIM] == claim_id and claimed(m, now) and live(m, now) then
      held[#held + 1] = {m, raw}
    end
  end
  return held
end

