-- The free, due message index: claim, pop and listing read only messages they can
-- return, whatever lies at the head of a queue.
--
-- A message is READY when it is unclaimed and its delay (if any) has been settled as
-- over: claim_expires = 0 (which holds exactly when claim_id IS NULL) and NOT delayed.
-- Time alone never changes that state; the driver "settles" a queue (message_settle,
-- bounded chunks) before reading it: a lapsed claim mark is cleared, a delay that ended
-- is marked so, an expired message deleted, each found through an index ordered by the
-- time that matters. Readers still check delay_until against their own clock.
--
-- Each statement must be able to use its own index and no other (see queries.sql:
-- plans must not depend on statistics). The new predicates say claim_expires where the
-- older indexes say claim_id, so that, for instance, messages_free (claim_id IS NULL,
-- delayed messages too) can never serve a read of READY messages.

-- True while the message's delay has not been settled as over. A constant default adds
-- the column without rewriting the table.
ALTER TABLE messages ADD COLUMN delayed boolean NOT NULL DEFAULT false;

-- Delays that may still run: those ending after the newest message was posted (by the
-- clock that posted it; the database's own clock is not trusted). A claimed message's
-- delay is over. Done before the indexes exist, which it would otherwise update.
UPDATE messages SET delayed = true
WHERE claim_id IS NULL AND delay_until > (SELECT max(created) FROM messages);

-- Claim, pop and listing without delayed messages, in post order.
CREATE INDEX messages_ready ON messages (project, queue, seq)
    WHERE claim_expires = 0 AND NOT delayed;

-- Settling finds delayed messages by the end of their delay, claimed ones by the end of
-- their claim, and unclaimed ones by expiry (a claimed message outlives its claim, so
-- it is unclaimed before it expires).
CREATE INDEX messages_delayed ON messages (project, queue, delay_until)
    WHERE delayed;
CREATE INDEX messages_lapsing ON messages (project, queue, claim_expires)
    WHERE claim_expires > 0;
CREATE INDEX messages_unclaimed_expiry ON messages (project, queue, expires)
    WHERE claim_expires = 0;
-- Replaced by messages_lapsing, whose predicate messages_by_claim does not share.
DROP INDEX messages_claim_expiry;

-- Garbage collection's index, partial only so that a statement about one queue (which
-- never says "expires > 0") cannot walk it across every queue's expired messages.
CREATE INDEX messages_expiry ON messages (expires) WHERE expires > 0;
DROP INDEX messages_by_expiry;
