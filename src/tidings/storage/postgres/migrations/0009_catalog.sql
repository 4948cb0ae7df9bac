-- The pooled-mode catalog (issue 11, tidings.storage.catalog): pools, flavors and
-- where each queue lives. Only the management store fills these tables; in every
-- other schema they stay empty.

-- Pools are global. options: JSON object of [storage] overrides for its connections.
-- Writes to this table take the schema's catalog lock (catalog.sql, pools_lock) first,
-- so the URI check, the pool count and the write are one step.
CREATE TABLE pools (
    name    text COLLATE "C" PRIMARY KEY,
    uri     text NOT NULL UNIQUE,
    weight  bigint NOT NULL,
    flavor  text COLLATE "C",
    options text NOT NULL
);

-- Flavors belong to a project; their pools are those whose flavor names them.
CREATE TABLE flavors (
    project text COLLATE "C" NOT NULL,
    name    text COLLATE "C" NOT NULL,
    PRIMARY KEY (project, name)
);

-- (project, queue) -> pool. project is the storage project (topics too). The foreign
-- key is a backstop: placing share-locks the pool row, and deleting a pool locks it
-- for update before counting its placements (catalog.sql).
CREATE TABLE placements (
    project text COLLATE "C" NOT NULL,
    queue   text COLLATE "C" NOT NULL,
    pool    text COLLATE "C" NOT NULL REFERENCES pools (name) ON DELETE RESTRICT,
    PRIMARY KEY (project, queue)
);

-- How many queues a pool holds is a count over this index, never a scan of placements.
CREATE INDEX placements_by_pool ON placements (pool);
