-- The pooled-mode catalog (issue 11, tidings.storage.catalog): pools, flavors and
-- where each queue lives. Only the management store fills these tables; in every
-- other store they stay empty.
--
-- Foreign keys are off on our connections, so the catalog's rules are kept by the
-- statements (catalog.sql), each job inside one write transaction: a placement names
-- a pool that exists, a pool with placements is not deleted.

-- Pools are global. options: JSON object of [storage] overrides for its connections.
CREATE TABLE pools (
    name    TEXT PRIMARY KEY,
    uri     TEXT NOT NULL UNIQUE,
    weight  INTEGER NOT NULL,
    flavor  TEXT,
    options TEXT NOT NULL
) WITHOUT ROWID;

-- Flavors belong to a project; their pools are those whose flavor names them.
CREATE TABLE flavors (
    project TEXT NOT NULL,
    name    TEXT NOT NULL,
    PRIMARY KEY (project, name)
) WITHOUT ROWID;

-- (project, queue) -> pool. project is the storage project (topics too).
CREATE TABLE placements (
    project TEXT NOT NULL,
    queue   TEXT NOT NULL,
    pool    TEXT NOT NULL,
    PRIMARY KEY (project, queue)
) WITHOUT ROWID;

-- How many queues a pool holds is a count over this index, never a scan of placements.
CREATE INDEX placements_by_pool ON placements (pool);
