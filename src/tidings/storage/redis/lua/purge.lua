-- Drop every message and claim of the queue; with ARGV[1] == '1' also its counter,
-- outbox and quarantine (the queue itself is being deleted). UNLINK: the keys vanish
-- at once and Redis frees a large queue's memory in the background, not in this script.
redis.call('UNLINK', ORDER, RECORDS, EXPIRY, CLAIMS, CLAIM_EXPIRY, CLAIMED, READY, DELAYED,
  DELAY_ENDS, LAYOUT)
if ARGV[1] == '1' then
  redis.call('UNLINK', SEQ, OUTBOX, QUARANTINE)
end
return 1
