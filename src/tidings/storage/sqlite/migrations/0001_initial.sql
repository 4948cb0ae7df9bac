-- Queues, messages and claims of every project in one file.
-- Times are POSIX seconds (REAL). Message order is the global AUTOINCREMENT sequence,
-- which is monotonic and so gives FIFO per queue.

CREATE TABLE queues (
    project  TEXT NOT NULL,
    name     TEXT NOT NULL,
    metadata TEXT NOT NULL,          -- JSON object
    created  REAL NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;

CREATE TABLE messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,
    project       TEXT NOT NULL,
    queue         TEXT NOT NULL,
    body          BLOB NOT NULL,     -- JSON, stored as received
    client_id     TEXT NOT NULL,
    ttl           INTEGER NOT NULL,
    created       REAL NOT NULL,
    expires       REAL NOT NULL,
    delay_until   REAL NOT NULL DEFAULT 0,
    claim_id      TEXT,
    claim_expires REAL NOT NULL DEFAULT 0,
    claim_count   INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX messages_by_queue ON messages (project, queue, seq);
CREATE INDEX messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
CREATE INDEX messages_by_expiry ON messages (expires);

CREATE TABLE claims (
    id      TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    queue   TEXT NOT NULL,
    ttl     INTEGER NOT NULL,
    grace   INTEGER NOT NULL,
    updated REAL NOT NULL,
    expires REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX claims_by_queue ON claims (project, queue);
CREATE INDEX claims_by_expiry ON claims (expires);
