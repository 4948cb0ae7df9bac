-- Delete one subscription (live or not) and its failures. ARGV: sid.
local raw = redis.call('HGET', SUBS, ARGV[1])
if raw then
  drop_sub(ARGV[1], cmsgpack.unpack(raw))
end
return 1
