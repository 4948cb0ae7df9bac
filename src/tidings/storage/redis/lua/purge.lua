-- Drop every message and claim of the queue; with ARGV[1] == '1' also its counter
-- and outbox (the queue itself is being deleted).
redis.call('DEL', ORDER, RECORDS, EXPIRY, CLAIMS, CLAIM_EXPIRY)
if ARGV[1] == '1' then
  redis.call('DEL', SEQ, OUTBOX)
end
return 1
