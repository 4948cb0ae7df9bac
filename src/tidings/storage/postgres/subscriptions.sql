-- Named queries of the PostgreSQL subscriptions and outbox. A subscription is live
-- while expires > now; "now" is always a parameter.

-- name: subscription_insert
INSERT INTO subscriptions (id, project, source, subscriber, ttl, options, confirmed,
                           updated, expires)
VALUES ($1, $2, $3, $4, $5, $6, false, $7, $8);

-- Serialises creates (and subscriber changes) of one source, so subscribers stay
-- unique among live subscriptions without a unique index (expired rows linger).
-- name: source_lock
SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(31) || $2, 0));

-- name: subscription_by_subscriber
SELECT id::text, source, subscriber, ttl, options, confirmed, updated, expires
FROM subscriptions
WHERE project = $1 AND source = $2 AND subscriber = $3 AND expires > $4;

-- name: subscription_by_id
SELECT id::text, source, subscriber, ttl, options, confirmed, updated, expires
FROM subscriptions
WHERE id = $1 AND project = $2 AND source = $3 AND expires > $4;

-- name: subscription_page
SELECT id::text, source, subscriber, ttl, options, confirmed, updated, expires
FROM subscriptions
WHERE project = $1 AND source = $2 AND id::text > $3 AND expires > $4
ORDER BY id::text
LIMIT $5;

-- name: subscription_update
UPDATE subscriptions
SET subscriber = $2, ttl = $3, options = $4, updated = $5, expires = $6
WHERE id = $1;

-- name: subscription_confirm
UPDATE subscriptions SET confirmed = $5
WHERE id = $1 AND project = $2 AND source = $3 AND expires > $4
RETURNING id::text, source, subscriber, ttl, options, confirmed, updated, expires;

-- name: subscription_delete
WITH gone AS (
    DELETE FROM subscriptions WHERE id = $1 AND project = $2 AND source = $3
    RETURNING id
)
DELETE FROM deliveries WHERE subscription_id IN (SELECT id FROM gone);

-- name: source_purge_deliveries
DELETE FROM deliveries WHERE project = $1 AND source = $2;

-- name: source_purge
DELETE FROM subscriptions WHERE project = $1 AND source = $2;

-- One notification per message per admitted live subscription, due when the
-- message's delay ends; $9 admits only confirmed subscriptions.
-- name: delivery_fan_out
INSERT INTO deliveries (project, source, subscription_id, kind, message_id, payload, ttl,
                        delay, due)
SELECT $1, $2, s.id, 'notification', m.id, m.payload, m.ttl, m.delay, m.due
FROM subscriptions AS s
CROSS JOIN unnest($3::uuid[], $4::bytea[], $5::integer[], $6::integer[], $7::float8[])
    AS m (id, payload, ttl, delay, due)
WHERE s.project = $1 AND s.source = $2 AND s.expires > $8 AND (NOT $9 OR s.confirmed);

-- name: delivery_insert
INSERT INTO deliveries (project, source, subscription_id, kind, message_id, payload, due)
VALUES ($1, $2, $3, $4, NULL, $5, $6);

-- Taking leases rows; SKIP LOCKED lets dispatchers on many nodes pass each other by.
-- name: delivery_due
SELECT d.id, d.project, d.source, d.subscription_id::text, d.kind, d.message_id::text,
       d.payload, d.ttl, d.delay, d.attempts, s.subscriber, s.options,
       coalesce(s.expires > $1, false)
FROM deliveries AS d
LEFT JOIN subscriptions AS s ON s.id = d.subscription_id
WHERE d.due <= $1
ORDER BY d.due
LIMIT $2
FOR UPDATE OF d SKIP LOCKED;

-- name: delivery_lease
UPDATE deliveries SET due = $2 WHERE id = ANY($1::bigint[]);

-- name: delivery_drop
DELETE FROM deliveries WHERE id = ANY($1::bigint[]);

-- name: delivery_retry
UPDATE deliveries SET attempts = $2, due = $3 WHERE id = $1;

-- name: failure_insert
INSERT INTO delivery_failures (project, source, subscription_id, kind, message_id,
                               attempts, error, failed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- name: failure_page
SELECT subscription_id::text, kind, message_id::text, attempts, error, failed
FROM delivery_failures
WHERE project = $1 AND source = $2 AND subscription_id = $3
ORDER BY id DESC
LIMIT $4;

-- name: gc_subscriptions
WITH gone AS (
    DELETE FROM subscriptions WHERE id IN (
        SELECT id FROM subscriptions WHERE expires <= $1 LIMIT $2)
    RETURNING id
)
SELECT count(*) FROM gone;
