-- Stats that do not count a queue, and deep queues deleted in bounded chunks (issue 8).
--
-- A queue's messages and claims are filed under its rows_key (their "queue" column):
-- its name, or, for a queue created while the rows of an earlier queue of that name
-- are still being removed, '<name>#<id>', which no queue name can be (names have no
-- '#'). Deleting or purging a deep queue retires its key (retired_keys) in one short
-- step; garbage collection then removes the rows filed under it in chunks. Every read
-- goes through the queue's current key, so the leftovers are never seen, and nothing
-- filed under a new key can go with them.
ALTER TABLE queues ADD COLUMN rows_key TEXT NOT NULL DEFAULT '';
UPDATE queues SET rows_key = name;

-- Messages were read by queue name alone: any stored without a queue row now get one,
-- so that none of them goes out of sight.
INSERT OR IGNORE INTO queues (project, name, metadata, created, rows_key)
SELECT project, queue, '{}', min(created), queue
FROM messages INDEXED BY messages_by_queue
GROUP BY project, queue;

-- after_seq: the messages up to it are gone; the next chunk starts past it.
CREATE TABLE retired_keys (
    project   TEXT NOT NULL,
    queue     TEXT NOT NULL,   -- a rows_key no queue has any more
    after_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;

-- The rows filed under each live queue's key: messages, and messages marked claimed.
-- Stats subtract the expired messages and lapsed marks not settled yet (time-ordered
-- index ranges, empty once the queue is settled), so they stay exact and never count
-- the queue. One writer: a counter row costs no contention.
CREATE TABLE queue_counters (
    project TEXT NOT NULL,
    queue   TEXT NOT NULL,     -- the queue's rows_key
    total   INTEGER NOT NULL,
    marked  INTEGER NOT NULL,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;

INSERT INTO queue_counters (project, queue, total, marked)
SELECT q.project, q.rows_key,
       (SELECT count(*) FROM messages INDEXED BY messages_by_queue
        WHERE project = q.project AND queue = q.rows_key),
       (SELECT count(*) FROM messages INDEXED BY messages_marked
        WHERE project = q.project AND queue = q.rows_key AND claim_id IS NOT NULL)
FROM queues AS q;

-- A key's counters live as long as a queue has the key. Rows filed under a retired key
-- have no counters, so removing them touches none.
CREATE TRIGGER queues_count_from_zero AFTER INSERT ON queues
BEGIN
    INSERT INTO queue_counters (project, queue, total, marked)
    VALUES (new.project, new.rows_key, 0, 0);
END;

CREATE TRIGGER queues_rekeyed AFTER UPDATE OF rows_key ON queues
WHEN new.rows_key <> old.rows_key
BEGIN
    DELETE FROM queue_counters WHERE project = old.project AND queue = old.rows_key;
    INSERT INTO queue_counters (project, queue, total, marked)
    VALUES (new.project, new.rows_key, 0, 0);
END;

CREATE TRIGGER queues_uncounted AFTER DELETE ON queues
BEGIN
    DELETE FROM queue_counters WHERE project = old.project AND queue = old.rows_key;
END;

-- Whatever writes messages (post, claim, release, delete, pop, dead-letter moves,
-- settling, garbage collection) keeps the counters in the same transaction. OR IGNORE:
-- a body that cannot fail spares the statement firing it a statement journal.
CREATE TRIGGER messages_counted AFTER INSERT ON messages
BEGIN
    UPDATE OR IGNORE queue_counters
    SET total = total + 1, marked = marked + (new.claim_id IS NOT NULL)
    WHERE project = new.project AND queue = new.queue;
END;

CREATE TRIGGER messages_uncounted AFTER DELETE ON messages
BEGIN
    UPDATE OR IGNORE queue_counters
    SET total = total - 1, marked = marked - (old.claim_id IS NOT NULL)
    WHERE project = old.project AND queue = old.queue;
END;

CREATE TRIGGER messages_marks_counted AFTER UPDATE OF claim_id ON messages
WHEN (old.claim_id IS NULL) <> (new.claim_id IS NULL)
BEGIN
    UPDATE OR IGNORE queue_counters
    SET marked = marked + (new.claim_id IS NOT NULL) - (old.claim_id IS NOT NULL)
    WHERE project = new.project AND queue = new.queue;
END;
