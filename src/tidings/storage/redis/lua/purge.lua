-- Drop every message and claim of the queue; with ARGV[1] == '1' also its counter,
-- outbox, quarantine and metadata token (the queue itself is being deleted). UNLINK: the
-- keys vanish at once and Redis frees a large queue's memory in the background.
redis.call('UNLINK', ORDER, RECORDS, EXPIRY, CLAIMS, CLAIM_EXPIRY, CLAIMED, READY, DELAYED,
  DELAY_ENDS, LAYOUT)
if ARGV[1] == '1' then
  redis.call('UNLINK', SEQ, OUTBOX, QUARANTINE, META_TOKEN)
end
return 1
