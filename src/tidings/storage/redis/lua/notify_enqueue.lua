-- Owe one push of a payload to a subscription, due now.
-- ARGV: now, sid, kind, payload. Returns the delivery's number.
return owe(ARGV[2], ARGV[3], '', ARGV[4], 0, 0, tonumber(ARGV[1]))
