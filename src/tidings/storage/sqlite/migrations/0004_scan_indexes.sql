-- Indexes that let claim, pop, listing and stats skip what they cannot return.
--
-- Messages not marked claimed, in queue order: claim, pop and the default listing walk
-- this, so in-flight claims at the head of a queue are never walked over. Expiry,
-- delay and client are in the index, so passing over a delayed, expired (not yet
-- swept) or own message reads no table row, whatever the size of its body.
CREATE INDEX messages_free
    ON messages (project, queue, seq, expires, delay_until, client_id)
    WHERE claim_id IS NULL;

-- Messages marked claimed, by claim expiry: the lapsed ones (claimable again) are a
-- range, and stats count the live ones without reading a table row.
CREATE INDEX messages_marked
    ON messages (project, queue, claim_expires, expires, delay_until, client_id)
    WHERE claim_id IS NOT NULL;
