-- Named queries of the SQLite driver. Parameters are named (:project, :now, ...).
-- A message is claimed while claim_id IS NOT NULL AND claim_expires > :now; a live
-- message has expires > :now; a delayed one has delay_until > :now. ready = 0 marks a
-- delay not yet settled as over (migration 0006).
-- Messages and claims are filed under their queue's rows_key (migration 0007): in the
-- statements about them, :queue is that key, which the driver reads first, in the same
-- transaction (queue_key).
-- Statements that fire the counting triggers of migration 0007 by adding messages or
-- changing claim marks say OR FAIL: a statement that may stop half-way under the
-- default (ABORT) makes SQLite keep a statement journal, a temporary file, which costs
-- more than the statement itself. A failed job is undone whole anyway (the executor
-- runs each in a transaction or savepoint of its own).

-- A new queue files its rows under its name, unless rows of an earlier queue of that
-- name are still being removed (see queue_retire): then under a key of its own.
-- name: queue_insert
INSERT INTO queues (project, name, metadata, created, rows_key)
VALUES (:project, :name, :metadata, :now,
        CASE WHEN EXISTS (SELECT 1 FROM retired_keys
                          WHERE project = :project AND queue = :name)
             THEN :name || '#' || :fresh ELSE :name END)
ON CONFLICT (project, name) DO NOTHING;

-- name: queue_metadata
SELECT metadata FROM queues WHERE project = :project AND name = :name;

-- name: queue_for_post
SELECT metadata, rows_key FROM queues WHERE project = :project AND name = :name;

-- name: queue_key
SELECT rows_key FROM queues WHERE project = :project AND name = :name;

-- name: queue_set_metadata
UPDATE queues SET metadata = :metadata WHERE project = :project AND name = :name;

-- name: queue_delete
DELETE FROM queues WHERE project = :project AND name = :name;

-- Deleting or purging a queue removes its rows at once when it holds at most :chunk
-- messages (queue_rows) and :chunk claims; otherwise its key is retired, and garbage
-- collection removes what is filed under it, :chunk messages and claims at a time.
-- name: queue_rows
SELECT total FROM queue_counters WHERE project = :project AND queue = :queue;

-- name: queue_drop_messages
DELETE FROM messages WHERE seq IN (
    SELECT seq FROM messages INDEXED BY messages_by_queue
    WHERE project = :project AND queue = :queue AND seq > :after
    ORDER BY seq LIMIT :chunk)
RETURNING seq;

-- name: queue_drop_claims
DELETE FROM claims WHERE id IN (
    SELECT id FROM claims INDEXED BY claims_by_queue
    WHERE project = :project AND queue = :queue
    LIMIT :chunk);

-- name: queue_retire
INSERT INTO retired_keys (project, queue, after_seq) VALUES (:project, :queue, :after)
ON CONFLICT (project, queue) DO NOTHING;

-- A purged queue that kept rows to remove files its new ones under another key (the
-- old one is retired first, so a queue whose key was its name gets a key of its own).
-- name: queue_rekey
UPDATE queues
SET rows_key = CASE WHEN EXISTS (SELECT 1 FROM retired_keys
                                 WHERE project = :project AND queue = :name)
                    THEN :name || '#' || :fresh ELSE :name END
WHERE project = :project AND name = :name;

-- Garbage collection removes the rows of retired keys, a chunk at a time, oldest key
-- first; a key is forgotten once nothing is filed under it.
-- name: retired_next
SELECT project, queue, after_seq FROM retired_keys LIMIT 1;

-- name: retired_progress
UPDATE retired_keys SET after_seq = :after WHERE project = :project AND queue = :queue;

-- name: retired_forget
DELETE FROM retired_keys WHERE project = :project AND queue = :queue;

-- name: queue_list
SELECT name, metadata FROM queues
WHERE project = :project
  AND name > :marker
  AND (:name_contains IS NULL OR instr(name, :name_contains) > 0)
ORDER BY name
LIMIT :limit;

-- A filtered listing examines at most :budget queues (the window), however few match:
-- the name filter and a cheap metadata prefilter (every "key": of the filter appears in
-- the stored JSON) run here, the exact metadata match in storage.rules. The window is a
-- subquery with a LIMIT, which SQLite runs as a co-routine: the outer LIMIT stops it.
-- name: queue_scan
SELECT name, metadata FROM (
    SELECT name, metadata FROM queues
    WHERE project = :project AND name > :marker
    ORDER BY name
    LIMIT :budget)
WHERE (:name_contains IS NULL OR instr(name, :name_contains) > 0)
  AND NOT EXISTS (SELECT 1 FROM json_each(:needles) AS n WHERE instr(metadata, n.value) = 0)
LIMIT :limit;

-- name: queue_window_end
SELECT count(*), max(name) FROM (
    SELECT name FROM queues
    WHERE project = :project AND name > :marker
    ORDER BY name
    LIMIT :budget);

-- name: queue_count
SELECT count(*) FROM queues WHERE project = :project;

-- Health's message volume: the counters of at most :budget queues (through their live
-- keys), and how many queues there are, up to :budget + 1. Until a queue is next settled
-- or swept, its counters still include messages that expired and marks of claims that
-- lapsed since: a gauge for operators, costing the queues counted, never their messages.
-- name: message_volume
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM queues LIMIT :budget + 1) AS a),
    coalesce(sum(c.total), 0),
    coalesce(sum(c.marked), 0)
FROM (SELECT project, rows_key FROM queues LIMIT :budget) AS q
JOIN queue_counters AS c ON c.project = q.project AND c.queue = q.rows_key;

-- Stats: the counters (migration 0007) less what time changed and no settle has
-- applied yet: expired messages, and marks of lapsed claims (a claimed message outlives
-- its claim, so no live mark is on an expired message). Both ranges are empty once
-- the queue is settled, so the cost does not grow with the queue nor with its claims.
-- name: queue_counts
SELECT
    c.total - (SELECT count(*) FROM messages INDEXED BY messages_expiring
               WHERE project = :project AND queue = :queue AND expires <= :now),
    c.marked - (SELECT count(*) FROM messages INDEXED BY messages_marked
                WHERE project = :project AND queue = :queue AND claim_id IS NOT NULL
                  AND claim_expires <= :now)
FROM queue_counters AS c
WHERE c.project = :project AND c.queue = :queue;

-- Delayed live messages, counted from their index up to :budget (a gauge, not a walk).
-- name: queue_delayed
SELECT count(*) FROM (
    SELECT 1 FROM messages INDEXED BY messages_delay_ends
    WHERE project = :project AND queue = :queue AND ready = 0
      AND delay_until > :now AND expires > :now
    LIMIT :budget
);

-- The ends pass over at most :budget expired (not yet swept) messages. The window is a
-- subquery in FROM, which SQLite runs as a co-routine: it stops at the first live one
-- (an IN list would read the whole window first).
-- name: queue_oldest
SELECT id, created FROM (
    SELECT id, created, expires FROM messages INDEXED BY messages_by_queue
    WHERE project = :project AND queue = :queue
    ORDER BY seq LIMIT :budget)
WHERE expires > :now
LIMIT 1;

-- name: queue_newest
SELECT id, created FROM (
    SELECT id, created, expires FROM messages INDEXED BY messages_by_queue
    WHERE project = :project AND queue = :queue
    ORDER BY seq DESC LIMIT :budget)
WHERE expires > :now
LIMIT 1;

-- A message posted with a delay waits outside messages_ready until settled.
-- name: message_insert
INSERT OR FAIL INTO messages (id, project, queue, body, client_id, ttl, created, expires,
                      delay_until, claim_count, ready)
VALUES (:id, :project, :queue, :body, :client_id, :ttl, :created, :expires,
        :delay_until, :claim_count, :delay_until = 0);

-- Listing with claimed messages walks the queue in post order, examining at most
-- :budget messages after the marker.
-- name: message_list_all
SELECT seq, id, body, ttl, created, expires, client_id, claim_id, claim_expires,
       claim_count, delay_until
FROM messages
WHERE seq IN (
    SELECT seq FROM messages INDEXED BY messages_by_queue
    WHERE project = :project AND queue = :queue AND seq > :marker
    ORDER BY seq LIMIT :budget)
  AND expires > :now
  AND (:exclude_client IS NULL OR client_id <> :exclude_client)
  AND (:include_delayed OR delay_until <= :now)
ORDER BY seq
LIMIT :limit;

-- Settling (migration 0006): what time changed since the last call is applied through
-- time-ordered index ranges before claim, pop and listing read messages_ready. Each
-- statement touches at most :chunk rows; the driver runs it a bounded number of times.
-- Readers recheck time on every row, so a settle that ran out of chunks leaves reads
-- right (see message_list_due).

-- Whether a queue has anything to settle: three index probes.
-- name: queue_unsettled
SELECT EXISTS (SELECT 1 FROM messages INDEXED BY messages_expiring
               WHERE project = :project AND queue = :queue AND expires <= :now)
    OR EXISTS (SELECT 1 FROM messages INDEXED BY messages_marked
               WHERE project = :project AND queue = :queue AND claim_id IS NOT NULL
                 AND claim_expires <= :now)
    OR EXISTS (SELECT 1 FROM messages INDEXED BY messages_delay_ends
               WHERE project = :project AND queue = :queue AND ready = 0
                 AND delay_until <= :now);

-- Expired messages are deleted, as the sweep would: nothing may read them.
-- name: settle_expired
DELETE FROM messages WHERE seq IN (
    SELECT seq FROM messages INDEXED BY messages_expiring
    WHERE project = :project AND queue = :queue AND expires <= :now
    LIMIT :chunk);

-- Lapsed claims let go of their messages (as the sweep's gc_claim_marks would).
-- name: settle_lapsed
UPDATE OR FAIL messages SET claim_id = NULL, claim_expires = 0 WHERE seq IN (
    SELECT seq FROM messages INDEXED BY messages_marked
    WHERE project = :project AND queue = :queue AND claim_id IS NOT NULL
      AND claim_expires <= :now
    LIMIT :chunk);

-- name: settle_delays
UPDATE messages SET ready = 1 WHERE seq IN (
    SELECT seq FROM messages INDEXED BY messages_delay_ends
    WHERE project = :project AND queue = :queue AND ready = 0 AND delay_until <= :now
    LIMIT :chunk);

-- Listing without claimed messages (the default), claim and pop read messages_ready
-- in queue order. Each window examines at most :budget index entries; the subqueries
-- run as co-routines, so a window stops as soon as it has :limit candidates. Expiry,
-- delay and client are rechecked in the index. Ended delays and lapsed claims not
-- settled yet (a settle ran out of chunks) are read from their time-ordered ranges, so
-- the page is the one a settled queue gives; once settled, those ranges are empty.
--
-- Without delayed messages; claim and pop use it with marker 0 and no client excluded.
-- name: message_list_due
WITH ready AS (
    SELECT seq FROM (
        SELECT seq, expires, delay_until, client_id FROM messages INDEXED BY messages_ready
        WHERE project = :project AND queue = :queue AND claim_id IS NULL AND ready = 1
          AND seq > :marker
        ORDER BY seq LIMIT :budget)
    WHERE expires > :now AND delay_until <= :now
      AND (:exclude_client IS NULL OR client_id <> :exclude_client)
    LIMIT :limit
), due AS (
    SELECT seq FROM (
        SELECT seq, expires, client_id FROM messages INDEXED BY messages_delay_ends
        WHERE project = :project AND queue = :queue AND ready = 0 AND delay_until <= :now
        ORDER BY delay_until LIMIT :budget)
    WHERE seq > :marker AND expires > :now
      AND (:exclude_client IS NULL OR client_id <> :exclude_client)
    LIMIT :limit
), lapsed AS (
    SELECT seq FROM (
        SELECT seq, expires, delay_until, client_id FROM messages INDEXED BY messages_marked
        WHERE project = :project AND queue = :queue AND claim_id IS NOT NULL
          AND claim_expires <= :now
        ORDER BY claim_expires LIMIT :budget)
    WHERE seq > :marker AND expires > :now AND delay_until <= :now
      AND (:exclude_client IS NULL OR client_id <> :exclude_client)
    LIMIT :limit
)
SELECT seq, id, body, ttl, created, expires, client_id, claim_id, claim_expires,
       claim_count, delay_until
FROM messages
WHERE seq IN (SELECT seq FROM ready UNION ALL SELECT seq FROM due
              UNION ALL SELECT seq FROM lapsed)
ORDER BY seq
LIMIT :limit;

-- With delayed messages: messages_ready and messages_delayed, both in queue order.
-- name: message_list_unclaimed
WITH ready AS (
    SELECT seq FROM (
        SELECT seq, expires, client_id FROM messages INDEXED BY messages_ready
        WHERE project = :project AND queue = :queue AND claim_id IS NULL AND ready = 1
          AND seq > :marker
        ORDER BY seq LIMIT :budget)
    WHERE expires > :now AND (:exclude_client IS NULL OR client_id <> :exclude_client)
    LIMIT :limit
), delayed AS (
    SELECT seq FROM (
        SELECT seq, expires, client_id FROM messages INDEXED BY messages_delayed
        WHERE project = :project AND queue = :queue AND ready = 0 AND seq > :marker
        ORDER BY seq LIMIT :budget)
    WHERE expires > :now AND (:exclude_client IS NULL OR client_id <> :exclude_client)
    LIMIT :limit
), lapsed AS (
    SELECT seq FROM (
        SELECT seq, expires, client_id FROM messages INDEXED BY messages_marked
        WHERE project = :project AND queue = :queue AND claim_id IS NOT NULL
          AND claim_expires <= :now
        ORDER BY claim_expires LIMIT :budget)
    WHERE seq > :marker AND expires > :now
      AND (:exclude_client IS NULL OR client_id <> :exclude_client)
    LIMIT :limit
)
SELECT seq, id, body, ttl, created, expires, client_id, claim_id, claim_expires,
       claim_count, delay_until
FROM messages
WHERE seq IN (SELECT seq FROM ready UNION ALL SELECT seq FROM delayed
              UNION ALL SELECT seq FROM lapsed)
ORDER BY seq
LIMIT :limit;

-- Where a listing's windows end: (entries in it, last seq) per queue-ordered window,
-- read when a page came back short; a full window means the listing ran out of budget
-- and resumes after the earliest full window's end.
-- name: message_window_end_all
SELECT count(*), max(seq) FROM (
    SELECT seq FROM messages INDEXED BY messages_by_queue
    WHERE project = :project AND queue = :queue AND seq > :marker
    ORDER BY seq LIMIT :budget);

-- name: message_window_end_due
SELECT count(*), max(seq) FROM (
    SELECT seq FROM messages INDEXED BY messages_ready
    WHERE project = :project AND queue = :queue AND claim_id IS NULL AND ready = 1
      AND seq > :marker
    ORDER BY seq LIMIT :budget);

-- name: message_window_end_unclaimed
SELECT count(*), max(seq) FROM (
    SELECT seq FROM messages INDEXED BY messages_ready
    WHERE project = :project AND queue = :queue AND claim_id IS NULL AND ready = 1
      AND seq > :marker
    ORDER BY seq LIMIT :budget)
UNION ALL
SELECT count(*), max(seq) FROM (
    SELECT seq FROM messages INDEXED BY messages_delayed
    WHERE project = :project AND queue = :queue AND ready = 0 AND seq > :marker
    ORDER BY seq LIMIT :budget);

-- name: message_by_id
SELECT seq, id, body, ttl, created, expires, client_id, claim_id, claim_expires,
       claim_count, delay_until
FROM messages
WHERE id = :id AND project = :project AND queue = :queue AND expires > :now;

-- name: message_delete
DELETE FROM messages WHERE seq = :seq;

-- A message found due before its delay was settled is settled by its claim.
-- name: message_claim
UPDATE OR FAIL messages
SET claim_id = :claim_id, claim_expires = :claim_expires, claim_count = claim_count + 1,
    expires = :expires, ttl = :ttl, ready = 1
WHERE seq = :seq;

-- name: claim_insert
INSERT INTO claims (id, project, queue, ttl, grace, updated, expires)
VALUES (:id, :project, :queue, :ttl, :grace, :now, :expires);

-- name: claim_get
SELECT id, ttl, grace, updated, expires FROM claims
WHERE id = :id AND project = :project AND queue = :queue AND expires > :now;

-- A claim's messages are found through its id: the queue's own indexes would walk it.
-- name: claim_messages
SELECT seq, id, body, ttl, created, expires, client_id, claim_id, claim_expires,
       claim_count, delay_until
FROM messages INDEXED BY messages_by_claim
WHERE claim_id = :id AND project = :project AND queue = :queue
  AND claim_expires > :now AND expires > :now
ORDER BY seq;

-- name: claim_renew
UPDATE claims SET ttl = :ttl, grace = :grace, updated = :now, expires = :expires
WHERE id = :id AND project = :project AND queue = :queue AND expires > :now;

-- name: message_extend_claim
UPDATE messages SET claim_expires = :claim_expires, expires = :expires, ttl = :ttl
WHERE seq = :seq;

-- name: claim_release_messages
UPDATE OR FAIL messages INDEXED BY messages_by_claim SET claim_id = NULL, claim_expires = 0
WHERE claim_id = :id AND project = :project AND queue = :queue;

-- name: claim_delete
DELETE FROM claims WHERE id = :id AND project = :project AND queue = :queue;

-- Garbage collection works in bounded chunks so that it never holds the write lock
-- for long; each statement is run until it affects fewer than :chunk rows.

-- name: gc_messages
DELETE FROM messages WHERE seq IN (
    SELECT seq FROM messages WHERE expires <= :now LIMIT :chunk);

-- Claims go with the marks they left (found through messages_by_claim), in one job,
-- so no lapsed mark needs a scan of every claimed message to be found.
-- name: gc_claim_marks
UPDATE OR FAIL messages SET claim_id = NULL, claim_expires = 0
WHERE claim_id IN (
    SELECT id FROM claims WHERE expires <= :now ORDER BY expires, id LIMIT :chunk)
  AND claim_expires <= :now;

-- name: gc_claims
DELETE FROM claims WHERE id IN (
    SELECT id FROM claims WHERE expires <= :now ORDER BY expires, id LIMIT :chunk);

-- Subscriptions and their outbox. A subscription is live while expires > :now.

-- name: subscription_insert
INSERT INTO subscriptions (id, project, source, subscriber, ttl, options, confirmed,
                           updated, expires)
VALUES (:id, :project, :source, :subscriber, :ttl, :options, 0, :now, :expires);

-- name: subscription_by_subscriber
SELECT id, source, subscriber, ttl, options, confirmed, updated, expires
FROM subscriptions
WHERE project = :project AND source = :source AND subscriber = :subscriber
  AND expires > :now;

-- name: subscription_by_id
SELECT id, source, subscriber, ttl, options, confirmed, updated, expires
FROM subscriptions
WHERE id = :id AND project = :project AND source = :source AND expires > :now;

-- name: subscription_page
SELECT id, source, subscriber, ttl, options, confirmed, updated, expires
FROM subscriptions
WHERE project = :project AND source = :source AND id > :marker AND expires > :now
ORDER BY id
LIMIT :limit;

-- name: subscription_update
UPDATE subscriptions
SET subscriber = :subscriber, ttl = :ttl, options = :options, updated = :updated,
    expires = :expires
WHERE id = :id;

-- name: subscription_confirm
UPDATE subscriptions SET confirmed = :confirmed
WHERE id = :id AND project = :project AND source = :source AND expires > :now;

-- name: subscription_delete
DELETE FROM subscriptions WHERE id = :id AND project = :project AND source = :source;

-- name: subscription_deliveries_delete
DELETE FROM deliveries WHERE subscription_id = :id;

-- name: subscription_failures_delete
DELETE FROM delivery_failures
WHERE project = :project AND source = :source AND subscription_id = :id;

-- name: subscription_purge_deliveries
DELETE FROM deliveries WHERE project = :project AND source = :source;

-- name: subscription_purge_bodies
DELETE FROM notification_bodies WHERE project = :project AND source = :source;

-- name: subscription_purge_failures
DELETE FROM delivery_failures WHERE project = :project AND source = :source;

-- name: subscription_purge
DELETE FROM subscriptions WHERE project = :project AND source = :source;

-- name: source_has_subscriptions
SELECT 1 FROM subscriptions
WHERE project = :project AND source = :source AND expires > :now
LIMIT 1;

-- One notification per message per admitted live subscription, due when the message's
-- delay ends. :confirmed_only admits only confirmed subscriptions. The body is not
-- copied into each: it is stored once (notification_body_insert, migration 0005).
-- name: delivery_fan_out
INSERT INTO deliveries (project, source, subscription_id, kind, message_id, payload, ttl,
                        delay, due)
SELECT :project, :source, s.id, 'notification', :message_id, x'', :ttl, :delay, :due
FROM subscriptions AS s
WHERE s.project = :project AND s.source = :source AND s.expires > :now
  AND (NOT :confirmed_only OR s.confirmed);

-- name: notification_body_insert
INSERT INTO notification_bodies (project, source, message_id, body)
VALUES (:project, :source, :message_id, :body);

-- name: delivery_insert
INSERT INTO deliveries (project, source, subscription_id, kind, message_id, payload, due)
VALUES (:project, :source, :subscription_id, :kind, NULL, :payload, :now);

-- The outbox is served project by project (migration 0003): a project's score is at
-- most the earliest due time it owes. Lowered by whatever owes or re-dues a delivery.
-- name: outbox_lower
INSERT INTO outbox_projects (project, due) VALUES (:project, :due)
ON CONFLICT (project) DO UPDATE SET due = min(due, excluded.due);

-- Projects with something due, earliest first, less those at their share of slots.
-- name: outbox_due_projects
SELECT project FROM outbox_projects
WHERE due <= :now AND project NOT IN (SELECT value FROM json_each(:skip))
ORDER BY due
LIMIT :limit;

-- name: outbox_next_due
SELECT min(due) FROM deliveries WHERE project = :project;

-- name: outbox_rescore
UPDATE outbox_projects SET due = :due WHERE project = :project;

-- name: outbox_forget
DELETE FROM outbox_projects WHERE project = :project;

-- Due deliveries of one project, with the try this take counts, and the body of a
-- notification (shared, or inline in a delivery written before migration 0005).
-- name: delivery_due
SELECT d.id, d.project, d.source, d.subscription_id, d.kind, d.message_id,
       coalesce(b.body, d.payload), d.ttl, d.delay, d.attempts + 1, s.subscriber,
       s.options, s.expires > :now
FROM deliveries AS d
LEFT JOIN subscriptions AS s ON s.id = d.subscription_id
LEFT JOIN notification_bodies AS b
    ON b.project = d.project AND b.source = d.source AND b.message_id = d.message_id
WHERE d.project = :project AND d.due <= :now
ORDER BY d.due
LIMIT :limit;

-- name: delivery_lease
UPDATE deliveries SET due = :until, attempts = attempts + 1 WHERE id = :id;

-- name: delivery_delete
DELETE FROM deliveries WHERE id = :id;

-- name: delivery_retry
UPDATE deliveries SET attempts = :attempts, due = :due WHERE id = :id
RETURNING project;

-- name: failure_insert
INSERT INTO delivery_failures (project, source, subscription_id, kind, message_id,
                               attempts, error, failed)
VALUES (:project, :source, :subscription_id, :kind, :message_id, :attempts, :error, :now);

-- Keeps the newest :keep failures of a subscription (run after each insert, so it
-- removes one row at most in the steady state).
-- name: failure_trim
DELETE FROM delivery_failures WHERE id IN (
    SELECT id FROM delivery_failures
    WHERE project = :project AND source = :source AND subscription_id = :subscription_id
    ORDER BY id DESC
    LIMIT -1 OFFSET :keep);

-- name: failure_prune
DELETE FROM delivery_failures WHERE id IN (
    SELECT id FROM delivery_failures WHERE failed < :before LIMIT :chunk);

-- name: failure_page
SELECT subscription_id, kind, message_id, attempts, error, failed
FROM delivery_failures
WHERE project = :project AND source = :source AND subscription_id = :subscription_id
ORDER BY id DESC
LIMIT :limit;

-- name: gc_subscriptions
DELETE FROM subscriptions WHERE id IN (
    SELECT id FROM subscriptions WHERE expires <= :now LIMIT :chunk);

-- The change feed (migration 0008).

-- Positional (node, project, queue, at): written in batches.
-- name: feed_event_insert
INSERT INTO feed_events (node, project, queue, at) VALUES (?, ?, ?, ?);

-- name: feed_last_event
SELECT coalesce(max(seq), 0) FROM feed_events;

-- Events after what a reader saw, at most :limit of them (the reader wakes every
-- watcher instead when there are more).
-- name: feed_events_after
SELECT seq, node, project, queue FROM feed_events
WHERE seq > :after
ORDER BY seq
LIMIT :limit;

-- When a queue's earliest claimed or delayed message becomes ready: one probe each of
-- the claim-expiry and delay-end ranges of the queue (messages_marked,
-- messages_delay_ends), which settling keeps free of what is ready already.
-- name: feed_next_claim_expiry
SELECT claim_expires FROM messages INDEXED BY messages_marked
WHERE project = :project AND queue = :queue AND claim_id IS NOT NULL
ORDER BY claim_expires
LIMIT 1;

-- name: feed_next_delay_end
SELECT delay_until FROM messages INDEXED BY messages_delay_ends
WHERE project = :project AND queue = :queue AND ready = 0
ORDER BY delay_until
LIMIT 1;

-- name: feed_relay_insert
INSERT INTO feed_relay (node, payload, at) VALUES (:node, :payload, :at);

-- name: feed_relay_waiting
SELECT EXISTS (SELECT 1 FROM feed_relay WHERE node = :node);

-- name: feed_relay_take
SELECT seq, payload FROM feed_relay WHERE node = :node ORDER BY seq LIMIT :limit;

-- name: feed_relay_taken
DELETE FROM feed_relay WHERE node = :node AND seq <= :last;

-- Pruning looks at the :chunk oldest rows only (rows come in time order), so a call is
-- bounded however many recent rows there are; the newest event always stays.
-- name: gc_feed_events
DELETE FROM feed_events WHERE seq IN (
    SELECT seq FROM (SELECT seq, at FROM feed_events ORDER BY seq LIMIT :chunk)
    WHERE at < :before)
  AND seq < (SELECT max(seq) FROM feed_events);

-- name: gc_feed_relay
DELETE FROM feed_relay WHERE seq IN (
    SELECT seq FROM (SELECT seq, at FROM feed_relay ORDER BY seq LIMIT :chunk)
    WHERE at < :before);
