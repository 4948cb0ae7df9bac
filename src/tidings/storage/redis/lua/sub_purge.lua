-- Delete every subscription of the source with everything owed to them and their
-- failures. The counter stays, so a delivery id is never handed out twice.
redis.call('DEL', SUBS, SUB_ORDER, SUB_EXPIRY, SUBSCRIBERS, NOTIFY, NOTIFY_DUE, FAILURES,
  BODIES, BODY_REFS)
return 1
