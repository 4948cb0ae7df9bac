-- Stats that do not count a queue, and deep queues deleted in bounded chunks (issue 8).
--
-- A queue's messages and claims are filed under its rows_key (their "queue" column):
-- its name, or, for a queue created while the rows of an earlier queue of that name
-- are still being removed, '<name>#<id>', which no queue name can be (names have no
-- '#'). Deleting or purging a deep queue retires its key (retired_keys) in one short
-- transaction; garbage collection then removes the rows filed under it in chunks.
-- Every statement reads through the queue's current key, so the leftovers are never
-- seen, and nothing filed under a new key can go with them.
ALTER TABLE queues ADD COLUMN rows_key text COLLATE "C";
UPDATE queues SET rows_key = name;

-- Messages were read by queue name alone: any stored without a queue row now get one,
-- so that none of them goes out of sight.
INSERT INTO queues (project, name, metadata, created, rows_key)
SELECT project, queue, '{}', min(created), queue FROM messages GROUP BY project, queue
ON CONFLICT (project, name) DO NOTHING;

ALTER TABLE queues ALTER COLUMN rows_key SET NOT NULL;

-- after_seq: the messages up to it are gone. The next chunk starts past it, so it never
-- walks the index entries of rows deleted before (dead until vacuumed).
CREATE TABLE retired_keys (
    project   text COLLATE "C" NOT NULL,
    queue     text COLLATE "C" NOT NULL,   -- a rows_key no queue has any more
    after_seq bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (project, queue)
);

-- The rows filed under each key: messages, and messages marked claimed
-- (claim_expires > 0). Stats sum a key's rows and subtract the expired messages and
-- lapsed marks not settled yet (index ranges that are empty once the queue is
-- settled), so they stay exact and never count the queue.
--
-- A key has up to 16 rows, and a statement adds its changes to the row of
-- its connection's shard (the backend pid modulo 16): one row per key would make every
-- transaction posting to a queue wait, from its insert to its commit, for the one
-- before it; here concurrent posters on different connections do not meet (a reader
-- sums at most 16 rows). The rows are taken at the end of a statement, after the
-- message rows it locks, and a statement that changes several keys (garbage
-- collection) takes them in one order.
CREATE TABLE queue_counters (
    project text COLLATE "C" NOT NULL,
    queue   text COLLATE "C" NOT NULL,   -- a rows_key
    shard   smallint NOT NULL,
    total   bigint NOT NULL,
    marked  bigint NOT NULL,
    PRIMARY KEY (project, queue, shard)
);

INSERT INTO queue_counters (project, queue, shard, total, marked)
SELECT project, queue, 0, count(*), count(*) FILTER (WHERE claim_expires > 0)
FROM messages GROUP BY project, queue;

-- Whatever writes messages (post, claim, release, delete, pop, dead-letter moves,
-- settling, garbage collection) keeps the counters, once per statement and key.
CREATE FUNCTION count_arrived_messages() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO queue_counters AS c (project, queue, shard, total, marked)
    SELECT project, queue, pg_backend_pid() % 16, count(*),
           count(*) FILTER (WHERE claim_expires > 0)
    FROM arrived
    GROUP BY project, queue
    ORDER BY project, queue
    ON CONFLICT (project, queue, shard) DO UPDATE
    SET total = c.total + excluded.total, marked = c.marked + excluded.marked;
    RETURN NULL;
END $$;

CREATE FUNCTION count_gone_messages() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO queue_counters AS c (project, queue, shard, total, marked)
    SELECT project, queue, pg_backend_pid() % 16, -count(*),
           -count(*) FILTER (WHERE claim_expires > 0)
    FROM gone
    GROUP BY project, queue
    ORDER BY project, queue
    ON CONFLICT (project, queue, shard) DO UPDATE
    SET total = c.total + excluded.total, marked = c.marked + excluded.marked;
    RETURN NULL;
END $$;

CREATE FUNCTION count_changed_marks() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO queue_counters AS c (project, queue, shard, total, marked)
    SELECT project, queue, pg_backend_pid() % 16, 0, sum(change)
    FROM (SELECT project, queue, 1 AS change FROM new_rows WHERE claim_expires > 0
          UNION ALL
          SELECT project, queue, -1 FROM old_rows WHERE claim_expires > 0) AS changes
    GROUP BY project, queue
    HAVING sum(change) <> 0
    ORDER BY project, queue
    ON CONFLICT (project, queue, shard) DO UPDATE
    SET marked = c.marked + excluded.marked;
    RETURN NULL;
END $$;

CREATE TRIGGER messages_counted AFTER INSERT ON messages
REFERENCING NEW TABLE AS arrived
FOR EACH STATEMENT EXECUTE FUNCTION count_arrived_messages();

CREATE TRIGGER messages_uncounted AFTER DELETE ON messages
REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION count_gone_messages();

CREATE TRIGGER messages_marks_counted AFTER UPDATE ON messages
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION count_changed_marks();
