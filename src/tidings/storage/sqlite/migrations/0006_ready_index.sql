-- The free, due message index (issue 8). Claim, pop and listing read only messages that
-- are unclaimed and not delayed, so nothing claimed, delayed or expired at the head of a
-- queue is walked over. Time-based readiness is settled, not scanned: before reading, a
-- claim, pop or listing applies what came due through the time-ordered indexes below,
-- in bounded chunks (expired messages deleted, lapsed claims released, ended delays
-- made ready).
--
-- ready = 0: posted with a delay not yet settled as over (such a message is never
-- claimed). ready = 1: no delay, or one settled as over; readers still check
-- delay_until, so a caller whose clock runs behind never sees a delayed message early.
ALTER TABLE messages ADD COLUMN ready INTEGER NOT NULL DEFAULT 1;

-- Delays still running at the upgrade wait to be settled; those already over are ready
-- (times are POSIX seconds: julianday of the epoch is 2440587.5).
UPDATE messages SET ready = 0
WHERE claim_id IS NULL AND delay_until > (julianday('now') - 2440587.5) * 86400.0;

-- Unclaimed messages whose delay is over, in queue order: claim, pop and listing read
-- these. Expiry, delay and client are in the index, so a recheck reads no table row;
-- so are the columns of each index's own WHERE (a NULL or a 0 or 1 costs one header
-- byte), without which SQLite reads the table row to test them.
CREATE INDEX messages_ready
    ON messages (project, queue, seq, expires, delay_until, client_id, claim_id, ready)
    WHERE claim_id IS NULL AND ready = 1;

-- Replaced by messages_ready and messages_delayed.
DROP INDEX messages_free;

-- Delayed messages in queue order, for listings that include them.
CREATE INDEX messages_delayed
    ON messages (project, queue, seq, expires, client_id, ready)
    WHERE ready = 0;

-- Delayed messages by the end of their delay: the ones due are a range.
CREATE INDEX messages_delay_ends
    ON messages (project, queue, delay_until, expires, client_id, ready)
    WHERE ready = 0;

-- Every message of a queue by expiry: the expired ones are a range (settling deletes
-- them, as the sweep would), and stats count the live ones from it.
CREATE INDEX messages_expiring ON messages (project, queue, expires);
