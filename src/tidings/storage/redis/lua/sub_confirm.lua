-- Set `confirmed` on a live subscription. ARGV: now, sid, confirmed ('1' or '0').
-- Returns the new record, or nil when not live.
local s = load_sub(ARGV[2], tonumber(ARGV[1]))
if not s then
  return false
end
s[S_CONFIRMED] = ARGV[3] == '1'
local raw = cmsgpack.pack(s)
redis.call('HSET', SUBS, ARGV[2], raw)
return raw
