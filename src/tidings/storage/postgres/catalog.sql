-- Named queries of the PostgreSQL catalog (migration 0009; tidings.storage.catalog).

-- Serialises writes to pools within this schema (they are rare): the URI check and the
-- pool count stay true until the write commits.
-- name: pools_lock
SELECT pg_advisory_xact_lock(hashtextextended('tidings-pools:' || current_schema(), 0));

-- name: pool_uri_owner
SELECT name FROM pools WHERE uri = $1 AND name <> $2;

-- name: pool_exists
SELECT 1 FROM pools WHERE name = $1;

-- name: pool_uri
SELECT uri FROM pools WHERE name = $1;

-- name: pool_count
SELECT count(*) FROM pools;

-- name: pool_upsert
INSERT INTO pools (name, uri, weight, flavor, options)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO UPDATE
SET uri = excluded.uri, weight = excluded.weight, flavor = excluded.flavor,
    options = excluded.options;

-- name: pool_get
SELECT name, uri, weight, flavor, options FROM pools WHERE name = $1;

-- name: pool_page
SELECT name, uri, weight, flavor, options FROM pools
WHERE name > $1
ORDER BY name
LIMIT $2;

-- Before a delete or a change of URI: waits for placements being made on the pool to
-- commit, and keeps new ones out until this transaction ends (placing share-locks the
-- pool row).
-- name: pool_lock_row
SELECT 1 FROM pools WHERE name = $1 FOR UPDATE;

-- name: pool_delete
DELETE FROM pools WHERE name = $1;

-- name: pools_set_flavor
UPDATE pools SET flavor = $2 WHERE name = ANY ($1::text[]);

-- name: flavor_insert
INSERT INTO flavors (project, name) VALUES ($1, $2)
ON CONFLICT (project, name) DO NOTHING;

-- name: flavor_get
SELECT name FROM flavors WHERE project = $1 AND name = $2;

-- name: flavor_page
SELECT name FROM flavors
WHERE project = $1 AND name > $2
ORDER BY name
LIMIT $3;

-- name: flavor_delete
DELETE FROM flavors WHERE project = $1 AND name = $2;

-- name: placement_get
SELECT pool FROM placements WHERE project = $1 AND queue = $2;

-- Insert-if-absent on a pool that exists, share-locking it against a delete. Returns
-- the pool when this call placed the queue; nothing when it was placed already (read
-- it next) or the pool does not exist.
-- name: placement_insert
WITH target AS (SELECT name FROM pools WHERE name = $3 FOR KEY SHARE)
INSERT INTO placements (project, queue, pool)
SELECT $1, $2, name FROM target
ON CONFLICT (project, queue) DO NOTHING
RETURNING pool;

-- name: placement_move
WITH target AS (SELECT name FROM pools WHERE name = $3 FOR KEY SHARE)
INSERT INTO placements (project, queue, pool)
SELECT $1, $2, name FROM target
ON CONFLICT (project, queue) DO UPDATE SET pool = excluded.pool
RETURNING pool;

-- name: placement_delete
DELETE FROM placements WHERE project = $1 AND queue = $2;

-- An index count (placements_by_pool).
-- name: placement_count
SELECT count(*) FROM placements WHERE pool = $1;
