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

-- What is owed to a subscription, and its failures, die with it.
-- name: subscription_delete
WITH gone AS (
    DELETE FROM subscriptions WHERE id = $1 AND project = $2 AND source = $3
    RETURNING id
), owed AS (
    DELETE FROM deliveries WHERE subscription_id IN (SELECT id FROM gone)
)
DELETE FROM delivery_failures
WHERE project = $2 AND source = $3 AND subscription_id IN (SELECT id FROM gone);

-- Bodies first: then the deliveries' release trigger finds none to check.
-- name: source_purge_bodies
DELETE FROM notification_bodies WHERE project = $1 AND source = $2;

-- name: source_purge_deliveries
DELETE FROM deliveries WHERE project = $1 AND source = $2;

-- name: source_purge_failures
DELETE FROM delivery_failures WHERE project = $1 AND source = $2;

-- name: source_purge
DELETE FROM subscriptions WHERE project = $1 AND source = $2;

-- name: delivery_insert
INSERT INTO deliveries (project, source, subscription_id, kind, message_id, payload, due)
VALUES ($1, $2, $3, $4, NULL, $5, $6);

-- A post owes its notifications in post_messages (migration 0010), as it would here.
-- The outbox is served project by project (migration 0003): a project's score is at
-- most the earliest due time it owes. Whatever owes or re-dues a delivery holds the
-- project's outbox lock shared until it commits, and lowers the score if needed. A
-- taker raises the score only if it gets that lock exclusively at once (no writer of
-- that project in flight, so none of their deliveries is hidden from it); otherwise it
-- leaves the score low, which costs a later visit, not a delivery. Writers lowering the
-- score queue behind each other on the row only, so nothing here can deadlock.
-- name: outbox_share
SELECT pg_advisory_xact_lock_shared(hashtextextended('tidings-outbox' || chr(31) || $1, 0));

-- name: outbox_try_exclusive
SELECT pg_try_advisory_xact_lock(hashtextextended('tidings-outbox' || chr(31) || $1, 0));

-- name: outbox_lower
INSERT INTO outbox_projects AS o (project, due)
SELECT $1, $2
WHERE NOT EXISTS (SELECT 1 FROM outbox_projects WHERE project = $1 AND due <= $2)
ON CONFLICT (project) DO UPDATE SET due = least(o.due, excluded.due);

-- Projects with something due, earliest first, less those at their share of slots.
-- name: outbox_due_projects
SELECT project FROM outbox_projects
WHERE due <= $1 AND NOT (project = ANY($2::text[]))
ORDER BY due
LIMIT $3;

-- Re-scores a project by its earliest due delivery, or forgets it when it owes nothing.
-- name: outbox_rescore
WITH next AS (
    SELECT min(due) AS due FROM deliveries WHERE project = $1
), forgotten AS (
    DELETE FROM outbox_projects
    WHERE project = $1 AND (SELECT due FROM next) IS NULL
)
UPDATE outbox_projects SET due = (SELECT due FROM next)
WHERE project = $1 AND (SELECT due FROM next) IS NOT NULL;

-- Leases up to $3 due deliveries of one project, counting the try, and returns them
-- with their subscription (or none: the caller drops those) and the body of a
-- notification (shared, or inline in a delivery written before migration 0004);
-- SKIP LOCKED passes rows another node is finishing.
-- name: delivery_lease_due
WITH due AS (
    SELECT id, source, subscription_id, message_id FROM deliveries
    WHERE project = $1 AND due <= $2
    ORDER BY due
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
UPDATE deliveries AS d SET due = $4, attempts = d.attempts + 1
FROM due
LEFT JOIN subscriptions AS s ON s.id = due.subscription_id
LEFT JOIN notification_bodies AS b
    ON b.project = $1 AND b.source = due.source AND b.message_id = due.message_id
WHERE d.id = due.id
RETURNING d.id, d.project, d.source, d.subscription_id::text, d.kind, d.message_id::text,
          coalesce(b.body, d.payload), d.ttl, d.delay, d.attempts, s.subscriber,
          s.options, coalesce(s.expires > $2, false);

-- name: delivery_drop
DELETE FROM deliveries WHERE id = ANY($1::bigint[]);

-- name: delivery_retry
UPDATE deliveries SET attempts = $2, due = $3 WHERE id = $1
RETURNING project;

-- name: failure_insert
INSERT INTO delivery_failures (project, source, subscription_id, kind, message_id,
                               attempts, error, failed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8);

-- Keeps the newest $4 failures of a subscription (run after each insert, so it removes
-- one row at most in the steady state).
-- name: failure_trim
DELETE FROM delivery_failures WHERE id IN (
    SELECT id FROM delivery_failures
    WHERE project = $1 AND source = $2 AND subscription_id = $3
    ORDER BY id DESC
    OFFSET $4);

-- name: failure_prune
WITH gone AS (
    DELETE FROM delivery_failures WHERE id IN (
        SELECT id FROM delivery_failures WHERE failed < $1 LIMIT $2)
    RETURNING 1
)
SELECT count(*) FROM gone;

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
