-- Named queries of the SQLite catalog (migration 0009; tidings.storage.catalog).
-- Names compare bytewise (BINARY collation), as in every driver.

-- name: pool_uri_owner
SELECT name FROM pools WHERE uri = :uri AND name <> :name;

-- name: pool_uri
SELECT uri FROM pools WHERE name = :name;

-- name: pool_count
SELECT count(*) FROM pools;

-- name: pool_upsert
INSERT INTO pools (name, uri, weight, flavor, options)
VALUES (:name, :uri, :weight, :flavor, :options)
ON CONFLICT (name) DO UPDATE
SET uri = excluded.uri, weight = excluded.weight, flavor = excluded.flavor,
    options = excluded.options;

-- name: pool_get
SELECT name, uri, weight, flavor, options FROM pools WHERE name = :name;

-- name: pool_page
SELECT name, uri, weight, flavor, options FROM pools
WHERE name > :marker
ORDER BY name
LIMIT :limit;

-- name: pool_delete
DELETE FROM pools WHERE name = :name;

-- :names is a JSON array of pool names.
-- name: pools_set_flavor
UPDATE pools SET flavor = :flavor
WHERE name IN (SELECT value FROM json_each(:names));

-- name: flavor_insert
INSERT INTO flavors (project, name) VALUES (:project, :name)
ON CONFLICT (project, name) DO NOTHING;

-- name: flavor_get
SELECT name FROM flavors WHERE project = :project AND name = :name;

-- name: flavor_page
SELECT name FROM flavors
WHERE project = :project AND name > :marker
ORDER BY name
LIMIT :limit;

-- name: flavor_delete
DELETE FROM flavors WHERE project = :project AND name = :name;

-- name: placement_get
SELECT pool FROM placements WHERE project = :project AND queue = :queue;

-- Insert-if-absent, and only on a pool that exists (checked in the same transaction).
-- name: placement_insert
INSERT INTO placements (project, queue, pool)
SELECT :project, :queue, :pool
WHERE EXISTS (SELECT 1 FROM pools WHERE name = :pool)
ON CONFLICT (project, queue) DO NOTHING;

-- name: placement_move
INSERT INTO placements (project, queue, pool)
SELECT :project, :queue, :pool
WHERE EXISTS (SELECT 1 FROM pools WHERE name = :pool)
ON CONFLICT (project, queue) DO UPDATE SET pool = excluded.pool;

-- name: placement_delete
DELETE FROM placements WHERE project = :project AND queue = :queue;

-- An index count (placements_by_pool).
-- name: placement_count
SELECT count(*) FROM placements WHERE pool = :pool;
