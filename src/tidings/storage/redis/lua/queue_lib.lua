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
--   8 claimed  ZSET id -> claim expiry, for every message marked claimed: stats count
--              the live claims from it, and scans pass over claimed messages with it
--   9 quarantine HASH id -> a record that could not be read, moved aside (never lost,
--              never in the way): 'claim:<id>' and 'outbox:<id>' for those kinds
-- Times are POSIX seconds passed by the caller; the Redis clock is never read.

local SEQ, ORDER, RECORDS, EXPIRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local CLAIMS, CLAIM_EXPIRY, OUTBOX = KEYS[5], KEYS[6], KEYS[7]
local CLAIMED, QUARANTINE = KEYS[8], KEYS[9]

local F_ID, F_SEQ, F_BODY, F_TTL, F_CREATED, F_EXPIRES = 1, 2, 3, 4, 5, 6
local F_CLIENT, F_CLAIM, F_CLAIM_EXPIRES, F_CLAIM_COUNT, F_DELAY = 7, 8, 9, 10, 11

local C_TTL, C_GRACE, C_UPDATED, C_EXPIRES, C_IDS = 1, 2, 3, 4, 5

-- What the driver's decoders accept (driver._Record, _ClaimRecord, _OutboxEntry):
-- integers exact in a double, times within any sane range.
local MAX_INT = 9007199254740991
local MAX_TIME = 1e15

local function is_int(x)
  return type(x) == 'number' and x == math.floor(x) and x >= -MAX_INT and x <= MAX_INT
end

local function is_time(x)
  return type(x) == 'number' and x >= -MAX_TIME and x <= MAX_TIME
end

local function is_str(x)
  return type(x) == 'string'
end

local function sane_message(m)
  return type(m) == 'table' and #m == 11
    and is_str(m[F_ID]) and is_str(m[F_BODY]) and is_str(m[F_CLIENT]) and is_str(m[F_CLAIM])
    and is_int(m[F_SEQ]) and is_int(m[F_TTL]) and is_int(m[F_CLAIM_COUNT])
    and is_time(m[F_CREATED]) and is_time(m[F_EXPIRES]) and is_time(m[F_CLAIM_EXPIRES])
    and is_time(m[F_DELAY])
end

local function sane_claim(c)
  if type(c) ~= 'table' or #c ~= 5 or not is_int(c[C_TTL]) or not is_int(c[C_GRACE])
      or not is_time(c[C_UPDATED]) or not is_time(c[C_EXPIRES]) or type(c[C_IDS]) ~= 'table' then
    return false
  end
  for _, id in ipairs(c[C_IDS]) do
    if not is_str(id) then
      return false
    end
  end
  return true
end

-- {queue, id, body, ttl, created, expires, client, claim_count, staged_at}
local function sane_outbox(e)
  return type(e) == 'table' and #e == 9 and is_str(e[1]) and is_str(e[2]) and is_str(e[3])
    and is_int(e[4]) and is_time(e[5]) and is_time(e[6]) and is_str(e[7]) and is_int(e[8])
    and is_time(e[9])
end

-- The decoded record, or nil when it cannot be read.
local function decode(raw, sane)
  local ok, value = pcall(cmsgpack.unpack, raw)
  if ok and sane(value) then
    return value
  end
  return nil
end

local function set_aside(field, raw)
  redis.call('HSET', QUARANTINE, field, raw)
  redis.log(redis.LOG_WARNING, 'tidings: unreadable record quarantined in ' .. QUARANTINE ..
    ' as ' .. field)
end

-- Move an unreadable message record aside, out of every index.
local function quarantine(id, raw)
  set_aside(id, raw)
  redis.call('HDEL', RECORDS, id)
  redis.call('ZREM', ORDER, id)
  redis.call('ZREM', EXPIRY, id)
  redis.call('ZREM', CLAIMED, id)
end

local function load(id)
  local raw = redis.call('HGET', RECORDS, id)
  if not raw then
    return nil, nil
  end
  local m = decode(raw, sane_message)
  if not m then
    quarantine(id, raw)
    return nil, nil
  end
  return m, raw
end

-- fresh: the message is new to this queue, so the index of claims cannot hold it yet
-- (spares posts a command per message).
local function save(m, fresh)
  local raw = cmsgpack.pack(m)
  redis.call('HSET', RECORDS, m[F_ID], raw)
  redis.call('ZADD', EXPIRY, num(m[F_EXPIRES]), m[F_ID])
  if m[F_CLAIM] ~= '' then
    redis.call('ZADD', CLAIMED, num(m[F_CLAIM_EXPIRES]), m[F_ID])
  elseif not fresh then
    redis.call('ZREM', CLAIMED, m[F_ID])
  end
  return raw
end

local function remove(id)
  redis.call('HDEL', RECORDS, id)
  redis.call('ZREM', ORDER, id)
  redis.call('ZREM', EXPIRY, id)
  redis.call('ZREM', CLAIMED, id)
end

local function append(m)
  m[F_SEQ] = redis.call('INCR', SEQ)
  redis.call('ZADD', ORDER, m[F_SEQ], m[F_ID])
  return save(m, true)
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

-- The claim record (live or not), or nil; an unreadable one is moved aside.
local function read_claim(claim_id)
  local raw = redis.call('HGET', CLAIMS, claim_id)
  if not raw then
    return nil, nil
  end
  local c = decode(raw, sane_claim)
  if not c then
    set_aside('claim:' .. claim_id, raw)
    redis.call('HDEL', CLAIMS, claim_id)
    redis.call('ZREM', CLAIM_EXPIRY, claim_id)
    return nil, nil
  end
  return c, raw
end

local function load_claim(claim_id, now)
  local c, raw = read_claim(claim_id)
  if not c or c[C_EXPIRES] <= now then
    return nil, nil
  end
  return c, raw
end

-- Known without reading the record: expired, or (when asked) held by a live claim.
local function passed_over(id, now, skip_claimed)
  local expires = redis.call('ZSCORE', EXPIRY, id)
  if expires and tonumber(expires) <= now then
    return true
  end
  if skip_claimed then
    local claim_expires = redis.call('ZSCORE', CLAIMED, id)
    return claim_expires ~= false and tonumber(claim_expires) > now
  end
  return false
end

-- Calls visit(m, raw) for messages after seq `after` in FIFO order until it returns
-- true or `cap` messages were examined, so one call never blocks Redis for long.
-- Expired messages, and claimed ones when `skip_claimed`, are passed over from the
-- indexes without reading their records. visit may remove the message it is given.
-- Returns the seq (as Redis printed it) of the last message examined when the cap ran
-- out first, so that a listing can resume after it; nil otherwise.
local function scan(after, cap, now, skip_claimed, visit)
  local examined = 0
  local low = '(' .. after
  while examined < cap do
    local n = math.min(100, cap - examined)
    local rows = redis.call('ZRANGEBYSCORE', ORDER, low, '+inf', 'WITHSCORES', 'LIMIT', 0, n)
    for i = 1, #rows, 2 do
      examined = examined + 1
      if not passed_over(rows[i], now, skip_claimed) then
        local m, raw = load(rows[i])
        if m and visit(m, raw) then
          return nil
        end
      end
    end
    if #rows < 2 * n then
      return nil
    end
    low = '(' .. rows[#rows]
  end
  return string.sub(low, 2)
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

