-- Named queries of the metadata a node keeps (see metadata.py, migration 0010).

-- The metadata and its version, in one snapshot.
-- name: queue_metadata_versioned
SELECT metadata_version, metadata FROM queues WHERE project = $1 AND name = $2;
