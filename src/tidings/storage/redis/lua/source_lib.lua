-- Prelude of every script on a source's subscriptions and notification outbox
-- (prepended at load time, after common.lua and, for post.lua, queue_lib.lua).
--
-- KEYS: the source's keys are the LAST ten of the script (keys.SOURCE_KINDS), all
-- under the hash tag of the queue of the same name:
--   subs         HASH sid -> msgpack subscription record (see S_* below)
--   sub-order    ZSET sid, every score 0: ids in byte order, for paging
--   sub-expiry   ZSET sid -> expires
--   subscribers  HASH subscriber -> sid of its live subscription (uniqueness)
--   notify-seq   counter numbering deliveries and failures; every change that makes a
--                delivery due sooner bumps it, so a taker can tell its view went stale
--   notify       HASH n -> msgpack delivery (see D_* below)
--   notify-due   ZSET n -> due; a leased delivery is due again when its lease ends
--   failures     ZSET, every score 0, members `sid|<inverted counter>|<msgpack>`: the
--                failures of each subscription, newest first in byte order
--   bodies       HASH message id -> body of a notification, stored once however many
--                subscriptions are owed it (their deliveries carry `false` instead)
--   body-refs    HASH message id -> deliveries still owing that body; the last one
--                done, failed or dropped removes it
-- Times are POSIX seconds passed by the caller; the Redis clock is never read.

local SRC = #KEYS - 10
local SUBS, SUB_ORDER, SUB_EXPIRY, SUBSCRIBERS = KEYS[SRC + 1], KEYS[SRC + 2],
  KEYS[SRC + 3], KEYS[SRC + 4]
local NOTIFY_SEQ, NOTIFY, NOTIFY_DUE, FAILURES = KEYS[SRC + 5], KEYS[SRC + 6],
  KEYS[SRC + 7], KEYS[SRC + 8]
local BODIES, BODY_REFS = KEYS[SRC + 9], KEYS[SRC + 10]

-- {id, subscriber, ttl, options (JSON text), confirmed (boolean), updated, expires}
local S_ID, S_SUBSCRIBER, S_TTL, S_OPTIONS, S_CONFIRMED, S_UPDATED, S_EXPIRES =
  1, 2, 3, 4, 5, 6, 7
-- {sid, kind, message id ('' for none), payload, ttl, delay, attempts}; the payload of
-- a notification is `false`: its body is in BODIES (records written before that
-- change hold it inline, and are delivered as they were).
local D_SID, D_KIND, D_MESSAGE, D_PAYLOAD, D_TTL, D_DELAY, D_ATTEMPTS = 1, 2, 3, 4, 5, 6, 7

-- Failures sort newest first: their counter is stored as FAIL_SPAN - n, zero-padded.
local FAIL_SPAN = 999999999999999

-- The subscription if it is live.
local function load_sub(sid, now)
  local raw = redis.call('HGET', SUBS, sid)
  if not raw then
    return nil, nil
  end
  local s = cmsgpack.unpack(raw)
  if s[S_EXPIRES] <= now then
    return nil, nil
  end
  return s, raw
end

-- Ids of the live subscriptions, confirmed ones only when asked.
local function live_subs(now, confirmed_only)
  local ids = {}
  for _, sid in ipairs(redis.call('ZRANGEBYSCORE', SUB_EXPIRY, '(' .. num(now), '+inf')) do
    local s = load_sub(sid, now)
    if s and (s[S_CONFIRMED] or not confirmed_only) then
      ids[#ids + 1] = sid
    end
  end
  return ids
end

local function failure_range(sid)
  return '[' .. sid .. '|', '[' .. sid .. '|\255'
end

-- Forget a subscription: record, indexes, its subscriber's claim, its failures.
-- Deliveries still owed to it are dropped when they are taken.
local function drop_sub(sid, s)
  redis.call('HDEL', SUBS, sid)
  redis.call('ZREM', SUB_ORDER, sid)
  redis.call('ZREM', SUB_EXPIRY, sid)
  if redis.call('HGET', SUBSCRIBERS, s[S_SUBSCRIBER]) == sid then
    redis.call('HDEL', SUBSCRIBERS, s[S_SUBSCRIBER])
  end
  local low, high = failure_range(sid)
  redis.call('ZREMRANGEBYLEX', FAILURES, low, high)
end

-- Owe one push to a subscription (payload `false`: the message's stored body); returns
-- its number.
local function owe(sid, kind, message_id, payload, ttl, delay, due)
  local n = redis.call('INCR', NOTIFY_SEQ)
  redis.call('HSET', NOTIFY, n, cmsgpack.pack({sid, kind, message_id, payload, ttl, delay, 0}))
  redis.call('ZADD', NOTIFY_DUE, num(due), n)
  return n
end

-- Store a message's body once for `owers` deliveries that point at it.
local function keep_body(message_id, body, owers)
  redis.call('HSET', BODIES, message_id, body)
  redis.call('HINCRBY', BODY_REFS, message_id, owers)
end

-- The body a delivery pushes: its own, or the stored one it points at.
local function payload_of(d)
  if d[D_PAYLOAD] == false then
    return redis.call('HGET', BODIES, d[D_MESSAGE]) or ''
  end
  return d[D_PAYLOAD]
end

-- Forget delivery n (and its body with the last delivery pointing at it).
local function forget(n)
  local raw = redis.call('HGET', NOTIFY, n)
  if raw then
    local ok, d = pcall(cmsgpack.unpack, raw)
    if ok and type(d) == 'table' and d[D_PAYLOAD] == false then
      if redis.call('HINCRBY', BODY_REFS, d[D_MESSAGE], -1) <= 0 then
        redis.call('HDEL', BODY_REFS, d[D_MESSAGE])
        redis.call('HDEL', BODIES, d[D_MESSAGE])
      end
    end
    redis.call('HDEL', NOTIFY, n)
  end
  redis.call('ZREM', NOTIFY_DUE, n)
end

-- The earliest due time owed (exact, as Redis formats scores), or '' when none is.
local function earliest_due()
  local head = redis.call('ZRANGE', NOTIFY_DUE, 0, 0, 'WITHSCORES')
  if #head == 0 then
    return ''
  end
  return head[2]
end

local function notify_seq()
  return redis.call('GET', NOTIFY_SEQ) or '0'
end

