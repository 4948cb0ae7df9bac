-- Shared prelude of every per-queue script (prepended at load time, after common.lua).
--
-- KEYS (all under the queue's hash tag, so one script touches one slot):
--   1 seq      counter (INCR) giving each message its FIFO position and marker
--   2 order    ZSET id -> seq, every message
--   3 records  HASH id -> msgpack message record (see F_* below)
--   4 expiry   ZSET id -> expires (lets GC find expired messages without scanning)
--   5 claims   HASH claim id -> msgpack {ttl, grace, updated, expires, {ids}}
--   6 cexpiry  ZSET claim id -> expires
--   7 outbox   HASH id -> msgpack dead-letter move not yet applied to its target queue
--   8 claimed  ZSET id -> claim expiry, for every message marked claimed: stats count
--              the live claims from it, and lapsed claims are found by it
--   9 ready    ZSET id -> seq, the free index: unclaimed messages whose delay is over
--  10 delayed  ZSET id -> seq, unclaimed messages whose delay was not over when filed
--  11 delay-ends ZSET id -> delay end, the same messages by the time they become due
--  12 layout   STRING '2' once ready/delayed index every message; 'b:<seq>' while a
--              queue written before they existed is indexed up to seq (`indexed_upto`)
--  13 meta-token STRING, a random token replaced whenever the queue's metadata (kept in
--              its project's catalog, another slot) is written, and removed with the
--              queue: a node caching the metadata sends the token it read it under, and
--              a script that finds another one refuses (`metadata_changed`), so a change
--              is honoured by the very next post or claim on every node
--  14 quarantine HASH id -> a record that could not be read, moved aside (never lost,
--              never in the way): 'claim:<id>' and 'outbox:<id>' for those kinds
-- Times are POSIX seconds passed by the caller; the Redis clock is never read.
--
-- Every message is in order, records and expiry, and (once its queue is indexed) in
-- exactly one of claimed (marked claimed), delayed + delay-ends, or ready. What time changes (a claim lapsing, a delay
-- ending, a message expiring) is settled before the free index is read, a bounded
-- number at a time (`settle`), so claims, pops and listings read ready without walking
-- past claimed, delayed or expired messages; they still check every record they read.

local SEQ, ORDER, RECORDS, EXPIRY = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local CLAIMS, CLAIM_EXPIRY, OUTBOX = KEYS[5], KEYS[6], KEYS[7]
local CLAIMED, READY, DELAYED, DELAY_ENDS = KEYS[8], KEYS[9], KEYS[10], KEYS[11]
local LAYOUT, META_TOKEN, QUARANTINE = KEYS[12], KEYS[13], KEYS[14]

-- Tokens outlive any cached view (seconds, see driver.METADATA_MAX_AGE) by far; they
-- expire only so that one made for a queue that never came to exist does not stay.
local TOKEN_LIFETIME_MS = 86400000

-- nil when `expected` is the queue's current metadata token ('-': the caller did not
-- read the metadata), else the current token, made from `fresh` when there is none.
local function metadata_changed(expected, fresh)
  if expected == '-' then
    return nil
  end
  local token = redis.call('GET', META_TOKEN)
  if not token then
    token = fresh
    redis.call('SET', META_TOKEN, token, 'PX', TOKEN_LIFETIME_MS)
  end
  if token == expected then
    return nil
  end
  return token
end

local LAYOUT_CURRENT = '2'

-- The queue's change-feed channel (keys.KeySpace.feed_channel): the keys' base + 'feed',
-- so it hashes to this slot. Published in the step that makes messages ready (post,
-- release, dead-letter arrival), so no listener hears it before the data is there; the
-- channel names the queue, so the message is empty.
local FEED = string.sub(SEQ, 1, -4) .. 'feed'

local function signal_ready()
  redis.call('SPUBLISH', FEED, '')
end
-- Entries one Redis command of a settle or rebuild names at most.
local CHUNK = 500
-- Settling and indexing handle at most this many scan windows of entries per call, in
-- all: with the default scan budget, 5,000 expired messages at the head go in one call,
-- and a million never hold Redis long (the next calls go on).
local SETTLE_WINDOWS = 5

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

-- Calls redis.call(command, key, ...) for each key with the ids, CHUNK at a time.
local function each_chunk(command, keys, ids)
  for first = 1, #ids, CHUNK do
    local last = math.min(first + CHUNK - 1, #ids)
    for _, key in ipairs(keys) do
      redis.call(command, key, unpack(ids, first, last))
    end
  end
end

-- Forget messages: their records and every index.
local function remove_all(ids)
  each_chunk('HDEL', {RECORDS}, ids)
  each_chunk('ZREM', {ORDER, EXPIRY, CLAIMED, READY, DELAYED, DELAY_ENDS}, ids)
end

local function remove(id)
  remove_all({id})
end

-- Move an unreadable message record aside, out of every index.
local function quarantine(id, raw)
  set_aside(id, raw)
  remove(id)
end

-- The decoded record (or nil, quarantined when unreadable) of a raw HGET/HMGET reply.
local function decode_message(id, raw)
  if not raw then
    return nil
  end
  local m = decode(raw, sane_message)
  if not m then
    quarantine(id, raw)
  end
  return m
end

local function load(id)
  local raw = redis.call('HGET', RECORDS, id)
  local m = decode_message(id, raw)
  if not m then
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

-- Out of the free index (the messages are claimed).
local function unfile_all(ids)
  each_chunk('ZREM', {READY, DELAYED, DELAY_ENDS}, ids)
end

-- Into the free index, as of `now`: ready once its delay is over, delayed until then.
-- fresh: new to this queue, in no index yet.
local function file(m, now, fresh)
  local id = m[F_ID]
  if m[F_DELAY] > now then
    redis.call('ZADD', DELAYED, num(m[F_SEQ]), id)
    redis.call('ZADD', DELAY_ENDS, num(m[F_DELAY]), id)
    if not fresh then
      redis.call('ZREM', READY, id)
    end
  else
    redis.call('ZADD', READY, num(m[F_SEQ]), id)
    if not fresh then
      redis.call('ZREM', DELAYED, id)
      redis.call('ZREM', DELAY_ENDS, id)
    end
  end
end

-- The claim on m ended: it is free, and ready (its delay was over when it was claimed).
local function free_again(m)
  m[F_CLAIM], m[F_CLAIM_EXPIRES] = '', 0
  local raw = save(m)
  redis.call('ZADD', READY, num(m[F_SEQ]), m[F_ID])
  return raw
end

-- A queue with no message is indexed from its first one on: say so before posting.
local function start_layout()
  if redis.call('EXISTS', ORDER) == 0 then
    redis.call('SET', LAYOUT, LAYOUT_CURRENT)
  end
end

-- Append a message at the tail, filed as of its post time.
local function append(m)
  m[F_SEQ] = redis.call('INCR', SEQ)
  redis.call('ZADD', ORDER, m[F_SEQ], m[F_ID])
  local raw = save(m, true)
  file(m, m[F_CREATED], true)
  return raw
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

-- Up to `budget` ids of `key` scored at most `now`, CHUNK at a time: calls handle(ids)
-- on each chunk, which must take them out of that range. Returns the number handled
-- and whether the range may hold more.
local function drain(key, now, budget, handle)
  local used = 0
  while used < budget do
    local n = math.min(CHUNK, budget - used)
    local ids = redis.call('ZRANGEBYSCORE', key, '-inf', num(now), 'LIMIT', 0, n)
    if #ids > 0 then
      handle(ids)
    end
    used = used + #ids
    if #ids < n then
      return used, false
    end
  end
  return used, true
end

-- Expired messages leave for good (they are invisible already; the sweep would remove
-- them). Returns {entries handled, more, messages removed}.
local function settle_expired(now, budget)
  local removed = 0
  local used, more = drain(EXPIRY, now, budget, function(ids)
    local raws = redis.call('HMGET', RECORDS, unpack(ids))
    local doomed = {}
    for i, id in ipairs(ids) do
      local m = decode_message(id, raws[i])
      if not raws[i] then  -- an index entry without a record
        doomed[#doomed + 1] = id
      elseif m and live(m, now) then  -- the record is the truth: re-score it
        redis.call('ZADD', EXPIRY, num(m[F_EXPIRES]), id)
      elseif m then
        doomed[#doomed + 1] = id
        removed = removed + 1
      end
    end
    remove_all(doomed)
  end)
  return used, more, removed
end

-- Messages whose claim lapsed are ready again. Returns {entries handled, more}.
local function settle_lapsed(now, budget)
  return drain(CLAIMED, now, budget, function(ids)
    local raws = redis.call('HMGET', RECORDS, unpack(ids))
    local records, ready, unmarked = {}, {}, {}
    for i, id in ipairs(ids) do
      local m = decode_message(id, raws[i])
      if not m then
        unmarked[#unmarked + 1] = id
      elseif m[F_CLAIM] == '' then  -- a stray mark
        unmarked[#unmarked + 1] = id
        file(m, now, false)
      elseif m[F_CLAIM_EXPIRES] <= now then  -- free_again, in bulk
        m[F_CLAIM], m[F_CLAIM_EXPIRES] = '', 0
        records[#records + 1], records[#records + 2] = id, cmsgpack.pack(m)
        ready[#ready + 1], ready[#ready + 2] = num(m[F_SEQ]), id
        unmarked[#unmarked + 1] = id
      else  -- the record is the truth: re-score it
        redis.call('ZADD', CLAIMED, num(m[F_CLAIM_EXPIRES]), id)
      end
    end
    if #records > 0 then
      redis.call('HSET', RECORDS, unpack(records))
      redis.call('ZADD', READY, unpack(ready))
    end
    if #unmarked > 0 then
      redis.call('ZREM', CLAIMED, unpack(unmarked))
    end
  end)
end

-- Messages whose delay ended are ready, at their place in FIFO order.
-- Returns {entries handled, more}.
local function settle_due(now, budget)
  return drain(DELAY_ENDS, now, budget, function(ids)
    local ready = {}
    for _, id in ipairs(ids) do
      local seq = redis.call('ZSCORE', DELAYED, id)
      if seq then
        ready[#ready + 1], ready[#ready + 2] = seq, id
      end
    end
    redis.call('ZREM', DELAY_ENDS, unpack(ids))
    redis.call('ZREM', DELAYED, unpack(ids))
    if #ready > 0 then
      redis.call('ZADD', READY, unpack(ready))
    end
  end)
end

-- Bring the free index up to `now`, handling at most `budget` entries in all. Expired
-- messages go first, so that what the later steps make ready is live.
-- Returns {expired messages removed, more (the budget ran out first), budget left}.
local function settle(now, budget)
  local used, more, removed = settle_expired(now, budget)
  local left = budget - used
  if not more then
    used, more = settle_lapsed(now, left)
    left = left - used
  end
  if not more then
    used, more = settle_due(now, left)
    left = left - used
  end
  return removed, more, left
end

-- The seq up to which ready/delayed index every message: '+inf' once they index them
-- all. A queue written before they existed is indexed in FIFO order, at most `budget`
-- messages a call, from where the last call stopped; messages changed meanwhile are
-- filed by their own scripts, and filing again is harmless.
local function indexed_upto(now, budget)
  local state = redis.call('GET', LAYOUT)
  if state == LAYOUT_CURRENT then
    return '+inf'
  end
  if not state and redis.call('EXISTS', ORDER) == 0 then
    return '+inf'  -- nothing to index; the first post says so (start_layout)
  end
  local after = '0'
  if state and string.sub(state, 1, 2) == 'b:' then
    after = string.sub(state, 3)
  end
  if budget <= 0 then
    return after
  end
  local seen = 0
  while seen < budget do
    local n = math.min(CHUNK, budget - seen)
    local rows = redis.call('ZRANGEBYSCORE', ORDER, '(' .. after, '+inf', 'WITHSCORES',
      'LIMIT', 0, n)
    local ids = {}
    for i = 1, #rows, 2 do
      ids[#ids + 1] = rows[i]
    end
    if #ids > 0 then
      local raws = redis.call('HMGET', RECORDS, unpack(ids))
      for i, id in ipairs(ids) do
        local m = decode_message(id, raws[i])
        if not raws[i] then  -- an index entry without a record
          remove(id)
        elseif m and m[F_CLAIM] ~= '' then
          redis.call('ZADD', CLAIMED, num(m[F_CLAIM_EXPIRES]), id)
        elseif m then
          file(m, now, false)
        end
      end
    end
    if #ids < n then
      redis.call('SET', LAYOUT, LAYOUT_CURRENT)
      return '+inf'
    end
    seen, after = seen + n, rows[#rows]
  end
  redis.call('SET', LAYOUT, 'b:' .. after)
  return after
end

-- Calls visit(m, raw) for the messages of the sorted sets `sets` (id -> seq) with a seq
-- in (after, upto], in FIFO order, until it returns true or `cap` messages were
-- examined, so one call never blocks Redis for long. skip(id), when given, passes over
-- a message from the indexes without reading its record. visit may remove the message
-- it is given.
-- Returns {resume, examined, done}: resume is the seq of the last message examined when
-- the cap ran out first (so that a listing can go on after it), nil otherwise; done
-- tells that visit returned true.
local function walk(sets, after, upto, cap, visit, skip)
  local examined, low, last = 0, after, nil
  if cap <= 0 then
    return after, 0, false
  end
  while true do
    local n = math.min(100, cap - examined)
    local rows, bound = {}, nil
    for _, key in ipairs(sets) do
      local got = redis.call('ZRANGEBYSCORE', key, '(' .. low, upto, 'WITHSCORES',
        'LIMIT', 0, n)
      for i = 1, #got, 2 do
        rows[#rows + 1] = {tonumber(got[i + 1]), got[i]}
      end
      if #got >= 2 * n then  -- this set may hold more past its last row
        local top = tonumber(got[#got])
        if bound == nil or top < bound then
          bound = top
        end
      end
    end
    if #sets > 1 then
      table.sort(rows, function(a, b) return a[1] < b[1] end)
    end
    for _, row in ipairs(rows) do
      if bound ~= nil and row[1] > bound then
        break
      end
      if row[1] ~= last then  -- defensive: a message in two of the sets is visited once
        if examined >= cap then
          return num(last), examined, false
        end
        examined, last = examined + 1, row[1]
        if not (skip and skip(row[2])) then
          local m, raw = load(row[2])
          if m and visit(m, raw) then
            return nil, examined, true
          end
        end
      end
    end
    if bound == nil then
      return nil, examined, false
    end
    if examined >= cap then
      return num(last), examined, false
    end
    low = num(last)
  end
end

-- Calls visit(m, raw) for free messages after seq `after` in FIFO order, delayed ones
-- too when `with_delayed`, as `walk` does, and returns its resume; the queue is settled
-- first. visit still checks each record: a settle that ran out of budget leaves some
-- behind.
local function free_walk(after, cap, now, with_delayed, visit)
  local _, _, left = settle(now, SETTLE_WINDOWS * cap)
  local upto = indexed_upto(now, left)
  local sets = {READY}
  if with_delayed then
    sets[2] = DELAYED
  end
  local resume, examined, done = walk(sets, after, upto, cap, visit)
  if resume or done or upto == '+inf' then
    return resume
  end
  -- Past what is indexed yet (an upgraded queue), every message is walked, as before.
  if tonumber(upto) < tonumber(after) then
    upto = after
  end
  return (walk({ORDER}, upto, '+inf', cap - examined, visit, function(id)
    return passed_over(id, now, true)
  end))
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
