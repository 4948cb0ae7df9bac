-- The change feed across processes (issue 10). Within a process a committed post,
-- release or dead-letter move wakes the queue's watchers directly; other processes on
-- the file notice the commit by PRAGMA data_version and read here which queues changed.
--
-- One row per queue a write transaction made ready, written in that transaction, so a
-- reader never sees the event before the messages. Transactions take the write lock in
-- turn, so seq grows in commit order; readers go on from the last seq they read.
-- node: the writing process, which signalled its own watchers already. Rows older than
-- a minute are pruned by garbage collection, never the newest (seq must not restart).
CREATE TABLE feed_events (
    seq     INTEGER PRIMARY KEY,
    node    TEXT NOT NULL,
    project TEXT NOT NULL,
    queue   TEXT NOT NULL,    -- the queue's name
    at      REAL NOT NULL
);

-- Documents relayed to one node (a push to the WebSocket connection it holds). The
-- node deletes its rows as it reads them; those of a node that is gone are pruned by
-- garbage collection after a minute.
CREATE TABLE feed_relay (
    seq     INTEGER PRIMARY KEY,
    node    TEXT NOT NULL,
    payload BLOB NOT NULL,
    at      REAL NOT NULL
);

CREATE INDEX feed_relay_by_node ON feed_relay (node, seq);
