-- Named queries of the PostgreSQL driver; parameters are positional ($1, $2, ...).
-- A message is claimed while claim_id IS NOT NULL AND claim_expires > now; a live
-- message has expires > now; a delayed one has delay_until > now. "now" is always a
-- parameter ($n), never now(): the caller owns the clock.
-- A message is READY when claim_expires = 0 (unclaimed) AND NOT delayed (no delay, or one
-- settled as over); claims, pops and listings first settle the queue (message_settle),
-- so that lapsed claims, ended delays and expired messages never lie in the way of the
-- indexes they read. Readers still check delay_until: a node whose clock runs behind
-- the one that settled never sees a delayed message early.
-- Message rows are always selected as:
--   seq, id, body, ttl, created, expires, client_id, claim_id, claim_expires,
--   claim_count, delay_until
-- followed by ctid when the statement locks them.
--
-- Plans must not depend on statistics: a queue table is often filled faster than
-- autovacuum analyses it, and with no (or stale) statistics the planner believes
-- "project = $1 AND queue = $2" matches a handful of rows. Any statement that pairs
-- those conditions with a row key would then read the whole queue through the primary
-- key instead of probing the key's own index. Hence:
-- * rows named by a key of their own (message id, claim id) are found through that
--   key alone; their queue is checked with "(project, queue) IS NOT DISTINCT FROM
--   ($1, $2)", which means the same for these NOT NULL columns but which no index
--   can serve, so the planner cannot prefer the queue's index;
-- * rows the transaction has already locked are addressed by ctid: they cannot move
--   until it commits, and a TID scan is the only plan for it;
-- * a statement about one queue's messages states exactly the predicate of the partial
--   index meant to serve it, in the words of that index (claim_expires = 0 or > 0 for
--   the indexes of migration 0005, claim_id IS NULL for messages_free): no other
--   partial index's predicate is then implied, so no other index can serve it.
--
-- Statements that make messages ready (a claim release, a dead-letter move) also signal
-- the queue's watchers: pg_notify($channel, $payload) with the schema's readiness
-- channel and the queue's payload (see feed.py), heard when the transaction commits. A
-- post does not: its caller signals once it has committed (signals.py says why).
--
-- Messages and claims are filed under their queue's rows_key (migration 0006), not its
-- name. A statement about a queue's messages or claims is given the queue's name and
-- reads the key itself, in its own snapshot, from the queue row (the CTE "q": one
-- primary-key probe); a queue that does not exist has no key and matches nothing.
-- Statements of a transaction that has read (and locked) the queue row are given the
-- key itself.

-- A new queue files its rows under its name, unless rows of an earlier queue of that
-- name are still being removed (see queue_retire): then under a key of its own.
-- Returns the new queue's metadata version (migration 0010), nothing if it existed.
-- name: queue_insert
INSERT INTO queues (project, name, metadata, created, rows_key)
VALUES ($1, $2, $3, $4,
        CASE WHEN EXISTS (SELECT FROM retired_keys WHERE project = $1 AND queue = $2)
             THEN $2 || '#' || $5::text ELSE $2 END)
ON CONFLICT (project, name) DO NOTHING
RETURNING metadata_version;

-- name: queue_metadata
SELECT metadata FROM queues WHERE project = $1 AND name = $2;

-- A dead-letter move reads its target's key under a share lock: a concurrent delete or
-- purge waits for the move, and the move files under the key in force.
-- name: queue_key_for_share
SELECT rows_key FROM queues WHERE project = $1 AND name = $2 FOR SHARE;

-- name: queue_lock
SELECT rows_key FROM queues WHERE project = $1 AND name = $2 FOR UPDATE;

-- Returns the metadata's new version (the trigger of migration 0010 gives it).
-- name: queue_set_metadata
UPDATE queues SET metadata = $3 WHERE project = $1 AND name = $2
RETURNING metadata_version;

-- name: queue_delete
DELETE FROM queues WHERE project = $1 AND name = $2 RETURNING rows_key;

-- Deleting or purging a queue removes its rows at once when it holds at most $3
-- messages (queue_rows) and $3 claims; otherwise its key $2 is retired, and garbage
-- collection removes what is filed under it, a chunk per transaction. Each returns (rows found, rows removed), messages
-- also the last seq found: the next chunk starts after it ($4). Rows go by a range of
-- the primary key (a list of seqs might be planned as a filter over the whole queue),
-- not by ctid: one that someone else is changing is waited for, then removed in its
-- newest version, so a chunk that found fewer than $3 leaves nothing behind.
-- name: queue_drop_messages
WITH picked AS (
    SELECT seq FROM messages
    WHERE project = $1 AND queue = $2 AND seq > $4
    ORDER BY seq LIMIT $3
), last AS (
    SELECT max(seq) AS seq FROM picked
), gone AS (
    DELETE FROM messages
    WHERE project = $1 AND queue = $2 AND seq > $4 AND seq <= (SELECT seq FROM last)
    RETURNING 1
)
SELECT (SELECT count(*) FROM picked), (SELECT count(*) FROM gone),
       coalesce((SELECT seq FROM last), $4);

-- name: queue_drop_claims
WITH picked AS (
    SELECT id FROM claims WHERE project = $1 AND queue = $2 LIMIT $3
), gone AS (
    DELETE FROM claims WHERE id = ANY(ARRAY(SELECT id FROM picked)) RETURNING 1
)
SELECT (SELECT count(*) FROM picked), (SELECT count(*) FROM gone);

-- name: queue_rows
SELECT coalesce(sum(total), 0) FROM queue_counters WHERE project = $1 AND queue = $2;

-- name: queue_drop_counters
DELETE FROM queue_counters WHERE project = $1 AND queue = $2;

-- name: queue_retire
INSERT INTO retired_keys (project, queue, after_seq) VALUES ($1, $2, $3)
ON CONFLICT (project, queue) DO NOTHING;

-- A purged queue that kept rows to remove files its new ones under another key (the
-- old one is retired first, so a queue whose key was its name gets a key of its own).
-- name: queue_rekey
UPDATE queues
SET rows_key = CASE WHEN EXISTS (SELECT FROM retired_keys WHERE project = $1 AND queue = $2)
                    THEN $2 || '#' || $3::text ELSE $2 END
WHERE project = $1 AND name = $2;

-- Garbage collection removes the rows of retired keys, one key after another; a key is
-- forgotten (with its counters) once nothing is filed under it. Nodes collecting at
-- once take different keys.
-- name: retired_next
SELECT project, queue, after_seq FROM retired_keys LIMIT 1 FOR UPDATE SKIP LOCKED;

-- name: retired_progress
UPDATE retired_keys SET after_seq = $3 WHERE project = $1 AND queue = $2;

-- name: retired_forget
DELETE FROM retired_keys WHERE project = $1 AND queue = $2;

-- name: queue_list
SELECT name, metadata FROM queues
WHERE project = $1
  AND name > $2
  AND ($4::text IS NULL OR strpos(name, $4::text) > 0)
ORDER BY name
LIMIT $3;

-- A filtered listing examines at most $3 queues (the window), however few match: the
-- name filter and a cheap metadata prefilter (every "key": of the filter, $6, appears
-- in the stored JSON) run here, the exact metadata match in storage.rules. The window
-- is a subquery with a LIMIT, so the outer LIMIT stops reading it early.
-- name: queue_scan
SELECT name, metadata FROM (
    SELECT name, metadata FROM queues
    WHERE project = $1 AND name > $2
    ORDER BY name
    LIMIT $3) AS scanned
WHERE ($5::text IS NULL OR strpos(name, $5::text) > 0)
  AND NOT EXISTS (SELECT FROM unnest($6::text[]) AS needle WHERE strpos(metadata, needle) = 0)
LIMIT $4;

-- name: queue_window_end
SELECT count(*), max(name) FROM (
    SELECT name FROM queues
    WHERE project = $1 AND name > $2
    ORDER BY name
    LIMIT $3) AS scanned;

-- name: queue_count
SELECT count(*) FROM queues WHERE project = $1;

-- Health's message volume: the counters of at most $1 queues (through their live
-- keys), and how many queues there are, up to $1 + 1. Until a queue is next settled
-- or swept, its counters still include messages that expired and marks of claims that
-- lapsed since: a gauge for operators, costing the queues counted, never their messages.
-- name: message_volume
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM queues LIMIT $1 + 1) AS a),
    coalesce(sum(c.total), 0),
    coalesce(sum(c.marked), 0)
FROM (SELECT project, rows_key FROM queues LIMIT $1) AS q
JOIN queue_counters AS c ON c.project = q.project AND c.queue = q.rows_key;

-- Stats, in one statement (one snapshot) of a settled queue (see "pending" below): the
-- counters (migration 0006) less what time changed and no settle has applied yet:
-- expired unclaimed messages, and marks of lapsed claims (with those of them expired;
-- a claimed message outlives its claim, so no live mark is on an expired message).
-- These ranges are empty once the queue is settled, so the cost grows neither with
-- the queue nor with its claims. The ends pass over at most $4 expired messages.
-- Row: pending, total, claimed, oldest (id, created), newest (id, created).
-- $1 project, $2 queue, $3 now, $4 budget, $5 check.
-- name: queue_stats
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), pending AS (
    SELECT $5::boolean AND coalesce(
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires > 0 AND claim_expires <= $3
         ORDER BY claim_expires LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND delayed AND delay_until <= $3
         ORDER BY delay_until LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires = 0 AND expires <= $3
         ORDER BY expires LIMIT 1),
        false) AS yes
), counted AS (
    SELECT coalesce(sum(total), 0) AS total, coalesce(sum(marked), 0) AS marked
    FROM queue_counters
    WHERE project = $1 AND queue = (SELECT k FROM q) AND NOT (SELECT yes FROM pending)
), expired AS (
    SELECT count(*) AS n FROM messages
    WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires = 0 AND expires <= $3
      AND NOT (SELECT yes FROM pending)
), lapsed AS (
    SELECT count(*) AS n, count(*) FILTER (WHERE expires <= $3) AS expired FROM messages
    WHERE project = $1 AND queue = (SELECT k FROM q)
      AND claim_expires > 0 AND claim_expires <= $3
      AND NOT (SELECT yes FROM pending)
), oldest AS (
    SELECT id::text AS id, created FROM (
        SELECT id, created, expires FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q)
        ORDER BY seq LIMIT $4) AS scanned
    WHERE expires > $3 AND NOT (SELECT yes FROM pending)
    LIMIT 1
), newest AS (
    SELECT id::text AS id, created FROM (
        SELECT id, created, expires FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q)
        ORDER BY seq DESC LIMIT $4) AS scanned
    WHERE expires > $3 AND NOT (SELECT yes FROM pending)
    LIMIT 1
), delayed_now AS (
    -- Live delayed messages from their index, at most $4 of them (a gauge, not a walk).
    SELECT count(*) AS n FROM (
        SELECT 1 FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND delayed AND delay_until > $3
          AND expires > $3 AND NOT (SELECT yes FROM pending)
        LIMIT $4) AS scanned
)
SELECT pending.yes, counted.total - expired.n - lapsed.expired, counted.marked - lapsed.n,
       (SELECT id FROM oldest), (SELECT created FROM oldest),
       (SELECT id FROM newest), (SELECT created FROM newest), delayed_now.n
FROM pending, counted, expired, lapsed, delayed_now;

-- A post, whole in one call (one round trip, its own transaction; migration 0010).
-- $1 project, $2 queue, $3 the metadata version the batch was prepared from (NULL: from
-- {}, for a queue that does not exist), $4 a spare key for a new queue, $5 client id,
-- $6 now, $7 ids, $8 bodies, $9 ttls, $10 delays, $11 who is notified
-- (storage.base.Audience). Row: stored, the version and metadata in force when not
-- stored, notifications owed. Watchers are signalled after it (feed.py, signals.py).
-- name: message_post
SELECT o_stored, o_version, o_metadata, o_owed
FROM post_messages($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11);

-- A dead-letter move's arrival. $3 is the queue's key (queue_key_for_share); $10, $11
-- the signal (channel, payload).
-- name: message_insert
WITH inserted AS (
    INSERT INTO messages (id, project, queue, body, client_id, ttl, created, expires,
                          delay_until, claim_count)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9)
)
SELECT pg_notify($10, $11);

-- Every statement that may pass over rows it cannot return (expired but not yet settled,
-- delayed, claimed, the caller's own) reads them through a window: a subquery that
-- examines at most a budget of rows, whose LIMIT bounds the walk; the outer LIMIT stops
-- reading it as soon as enough rows qualify.

-- Claims, pops and listings settle a queue before they read it, without a round trip of
-- its own when there is nothing to settle: each such statement starts with "pending",
-- true when its last parameter asks to check and one of message_settle's windows is not
-- empty (three index probes; not EXISTS, whose ORDER BY the planner drops, so that the
-- order leaves each probe no plan but its index). It then reads nothing and returns
-- only the flag, and the caller settles and runs it again, this time without the check
-- (whatever a settle could not do, budget spent or rows locked, is left to the next
-- call).

-- A listing is one statement, so its page and where its window ends come from one
-- snapshot without a transaction. Each row is the pending flag, the window's (rows in
-- it, last seq) and a message; a page with no message is one row whose message columns
-- are NULL. The window's end is read only when the page came back short of $4 (a
-- one-time filter; otherwise it is (0, NULL)): a full window then means the budget ran
-- out and the listing resumes after it.

-- Listing that includes claimed messages walks the queue in post order; only delayed
-- messages (when not asked for) and the caller's own may fill its window.
-- $1 project, $2 queue, $3 marker, $4 limit, $5 now, $6 exclude client, $7 delayed too,
-- $8 budget, $9 check.
-- name: message_list_all
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), pending AS (
    SELECT $9::boolean AND coalesce(
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires > 0 AND claim_expires <= $5
         ORDER BY claim_expires LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND delayed AND delay_until <= $5
         ORDER BY delay_until LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires = 0 AND expires <= $5
         ORDER BY expires LIMIT 1),
        false) AS yes
), page AS MATERIALIZED (
    SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
           claim_expires, claim_count, delay_until
    FROM (
        SELECT * FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND seq > $3
        ORDER BY seq
        LIMIT $8) AS scanned
    WHERE NOT (SELECT yes FROM pending)
      AND expires > $5
      AND ($6::text IS NULL OR client_id <> $6::text)
      AND ($7::boolean OR delay_until <= $5)
    LIMIT $4
), window_end AS (
    SELECT count(*) AS examined, max(seq) AS last FROM (
        SELECT seq FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND seq > $3
        ORDER BY seq
        LIMIT $8) AS scanned
    WHERE NOT (SELECT yes FROM pending) AND (SELECT count(*) FROM page) < $4
)
SELECT pending.yes, window_end.examined, window_end.last, page.*
FROM pending CROSS JOIN window_end LEFT JOIN page ON true
ORDER BY page.seq;

-- Listing without claimed messages reads a settled queue, so it passes over no claimed
-- message, nor (unless they are asked for) delayed ones: without delayed messages it
-- reads the READY index, with them the unclaimed one (messages_free). The window is
-- left with rows a settle had no budget for, and the caller's own messages.
-- $1 project, $2 queue, $3 marker, $4 limit, $5 now, $6 exclude client, $7 budget,
-- $8 check.
-- name: message_list_ready
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), pending AS (
    SELECT $8::boolean AND coalesce(
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires > 0 AND claim_expires <= $5
         ORDER BY claim_expires LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND delayed AND delay_until <= $5
         ORDER BY delay_until LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires = 0 AND expires <= $5
         ORDER BY expires LIMIT 1),
        false) AS yes
), page AS MATERIALIZED (
    SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
           claim_expires, claim_count, delay_until
    FROM (
        SELECT * FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires = 0 AND NOT delayed
          AND seq > $3
        ORDER BY seq
        LIMIT $7) AS ready
    WHERE NOT (SELECT yes FROM pending)
      AND expires > $5 AND delay_until <= $5
      AND ($6::text IS NULL OR client_id <> $6::text)
    LIMIT $4
), window_end AS (
    SELECT count(*) AS examined, max(seq) AS last FROM (
        SELECT seq FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires = 0 AND NOT delayed
          AND seq > $3
        ORDER BY seq
        LIMIT $7) AS ready
    WHERE NOT (SELECT yes FROM pending) AND (SELECT count(*) FROM page) < $4
)
SELECT pending.yes, window_end.examined, window_end.last, page.*
FROM pending CROSS JOIN window_end LEFT JOIN page ON true
ORDER BY page.seq;

-- name: message_list_unclaimed
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), pending AS (
    SELECT $8::boolean AND coalesce(
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires > 0 AND claim_expires <= $5
         ORDER BY claim_expires LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND delayed AND delay_until <= $5
         ORDER BY delay_until LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires = 0 AND expires <= $5
         ORDER BY expires LIMIT 1),
        false) AS yes
), page AS MATERIALIZED (
    SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
           claim_expires, claim_count, delay_until
    FROM (
        SELECT * FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_id IS NULL AND seq > $3
        ORDER BY seq
        LIMIT $7) AS free
    WHERE NOT (SELECT yes FROM pending)
      AND expires > $5
      AND ($6::text IS NULL OR client_id <> $6::text)
    LIMIT $4
), window_end AS (
    SELECT count(*) AS examined, max(seq) AS last FROM (
        SELECT seq FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_id IS NULL AND seq > $3
        ORDER BY seq
        LIMIT $7) AS free
    WHERE NOT (SELECT yes FROM pending) AND (SELECT count(*) FROM page) < $4
)
SELECT pending.yes, window_end.examined, window_end.last, page.*
FROM pending CROSS JOIN window_end LEFT JOIN page ON true
ORDER BY page.seq;

-- name: message_by_ids
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2)
SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
       claim_expires, claim_count, delay_until
FROM messages
WHERE id = ANY($3::uuid[]) AND (project, queue) IS NOT DISTINCT FROM ($1::text, (SELECT k FROM q))
  AND expires > $4
ORDER BY seq;

-- Locks are taken in seq order everywhere, so multi-row changes never deadlock.
-- name: message_by_ids_for_update
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2)
SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
       claim_expires, claim_count, delay_until, ctid
FROM messages
WHERE id = ANY($3::uuid[]) AND (project, queue) IS NOT DISTINCT FROM ($1::text, (SELECT k FROM q))
  AND expires > $4
ORDER BY seq
FOR UPDATE;

-- Bulk delete without claim checks, in one statement. The delete goes by id, not by
-- the ctids just locked: a row updated after this statement's snapshot was taken is
-- locked in its newest version, which the delete reaches from the visible one.
-- name: message_delete_by_ids
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), doomed AS (
    SELECT id FROM messages
    WHERE id = ANY($3::uuid[])
      AND (project, queue) IS NOT DISTINCT FROM ($1::text, (SELECT k FROM q))
      AND expires > $4
    ORDER BY seq
    FOR UPDATE)
DELETE FROM messages WHERE id = ANY(ARRAY(SELECT id FROM doomed));

-- A delete of one message by a caller naming a canonical claim id ($4) or none (NULL),
-- whole in one call (migration 0010). No row: no such live message; else deleted, whether
-- $4 names a live claim of the queue (when not deleted), then the message's columns.
-- $1 project, $2 queue, $3 message id, $4 claim id, $5 now.
-- name: message_delete_held
SELECT o_deleted, o_claim_live, o_seq, o_id, o_body, o_ttl, o_created, o_expires,
       o_client_id, o_claim_id, o_claim_expires, o_claim_count, o_delay_until
FROM delete_message($1, $2, $3, $4, $5);

-- Rows this transaction has locked.
-- name: message_delete
DELETE FROM messages WHERE ctid = ANY($1::tid[]);

-- Settling a queue: lapsed claim marks are cleared, ended delays marked so, expired
-- messages deleted (they are invisible, and garbage collection would delete them). Each
-- kind is found through its own index ordered by the time that matters, so only rows
-- that change are read; each window takes at most $4 rows, and the caller goes on while
-- one came back full. Rows someone else has locked are left to a later call: SKIP LOCKED
-- never waits, so settling cannot deadlock with anything. Settling changes nothing a
-- caller can see: every read still checks claims, delays and expiry against "now".
-- Changes go by ctid, as at claim_create; a row both lapsed and due is changed once.
-- $1 project, $2 queue, $3 now, $4 rows per window. Returns the fullest window's count.
-- name: message_settle
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), lapsed AS (
    SELECT ctid AS tid FROM messages
    WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires > 0 AND claim_expires <= $3
    ORDER BY claim_expires
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), due AS (
    SELECT ctid AS tid FROM messages
    WHERE project = $1 AND queue = (SELECT k FROM q) AND delayed AND delay_until <= $3
    ORDER BY delay_until
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT ctid AS tid FROM messages
    WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires = 0 AND expires <= $3
    ORDER BY expires
    LIMIT $4
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT tid FROM lapsed UNION SELECT tid FROM due UNION SELECT tid FROM expired
), gone AS (
    DELETE FROM messages
    WHERE ctid = ANY(ARRAY(SELECT tid FROM picked)) AND expires <= $3
), settled AS (
    UPDATE messages
    SET claim_id = CASE WHEN claim_expires <= $3 THEN NULL ELSE claim_id END,
        claim_expires = CASE WHEN claim_expires <= $3 THEN 0 ELSE claim_expires END,
        delayed = delayed AND delay_until > $3
    WHERE ctid = ANY(ARRAY(SELECT tid FROM picked)) AND expires > $3
)
SELECT greatest((SELECT count(*) FROM lapsed), (SELECT count(*) FROM due),
                (SELECT count(*) FROM expired));

-- Claimable = READY and live, in post order, from a settled queue. The window of at most
-- $5 rows bounds what an unsettled expired head may cost; rows it passes over stay
-- locked only until the transaction ends. SKIP LOCKED lets concurrent claimers on any
-- node pass over each other's rows instead of waiting.
-- $1 project, $2 queue, $3 now, $4 limit, $5 budget.
-- name: message_claimable
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2)
SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
       claim_expires, claim_count, delay_until, tid
FROM (
    SELECT *, ctid AS tid FROM messages
    WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires = 0 AND NOT delayed
    ORDER BY seq
    LIMIT $5
    FOR UPDATE SKIP LOCKED) AS ready
WHERE expires > $3 AND delay_until <= $3
LIMIT $4;

-- A pop, whole in one statement: lock as message_claimable does and delete what was
-- locked (by ctid, with the caveat given at claim_create). Rows: the pending flag, then
-- a message (NULLs when there is none).
-- $1 project, $2 queue, $3 now, $4 limit, $5 budget, $6 check.
-- name: message_pop
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2
), pending AS (
    SELECT $6::boolean AND coalesce(
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires > 0 AND claim_expires <= $3
         ORDER BY claim_expires LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND delayed AND delay_until <= $3
         ORDER BY delay_until LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
             AND claim_expires = 0 AND expires <= $3
         ORDER BY expires LIMIT 1),
        false) AS yes
), picked AS (
    SELECT tid FROM (
        SELECT ctid AS tid, expires, delay_until FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM q) AND claim_expires = 0 AND NOT delayed
        ORDER BY seq
        LIMIT $5
        FOR UPDATE SKIP LOCKED) AS ready
    WHERE NOT (SELECT yes FROM pending) AND expires > $3 AND delay_until <= $3
    LIMIT $4
), gone AS (
    DELETE FROM messages AS m
    WHERE m.ctid = ANY(ARRAY(SELECT tid FROM picked))
    RETURNING m.seq, m.id::text, m.body, m.ttl, m.created, m.expires, m.client_id,
              m.claim_id::text, m.claim_expires, m.claim_count, m.delay_until
)
SELECT pending.yes, gone.* FROM pending LEFT JOIN gone ON true ORDER BY gone.seq;

-- A claim without a dead-letter policy, whole in one statement (one round trip, its
-- own transaction): lock as message_claimable does, mark what was locked, and record
-- the claim only if it holds something. Marking goes by ctid: a row locked in a version
-- newer than this statement's snapshot (which the rechecks of SKIP LOCKED make all but
-- impossible) is not seen by the update, so it is merely left out of this claim.
-- The new lifetime is that of storage.rules.claimed_lifetime: a claimed message
-- outlives its claim by the grace.
-- It claims only while the queue's metadata has version $10 (NULL: any; 0: the caller
-- believes there is no queue), the one its caller derived the dead-letter policy (none)
-- from (migration 0010); otherwise it reads nothing and says what is in force.
-- Rows: the pending flag, the queue's metadata version (NULL: no queue) and, when it is
-- not $10, its metadata, then a message (NULLs when there is none).
-- $1 project, $2 queue, $3 claim id, $4 now, $5 limit, $6 claim expiry, $7 ttl, $8 grace,
-- $9 budget, $10 metadata version, $11 check.
-- name: claim_create
WITH q AS (
    SELECT rows_key AS k, metadata_version AS v, metadata FROM queues
    WHERE project = $1 AND name = $2
), fresh AS (
    SELECT k FROM q WHERE $10::bigint IS NULL OR v = $10::bigint
), pending AS (
    SELECT $11::boolean AND coalesce(
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM fresh)
             AND claim_expires > 0 AND claim_expires <= $4
         ORDER BY claim_expires LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM fresh)
             AND delayed AND delay_until <= $4
         ORDER BY delay_until LIMIT 1),
        (SELECT true FROM messages WHERE project = $1 AND queue = (SELECT k FROM fresh)
             AND claim_expires = 0 AND expires <= $4
         ORDER BY expires LIMIT 1),
        false) AS yes
), picked AS (
    SELECT tid FROM (
        SELECT ctid AS tid, expires, delay_until FROM messages
        WHERE project = $1 AND queue = (SELECT k FROM fresh) AND claim_expires = 0
          AND NOT delayed
        ORDER BY seq
        LIMIT $9
        FOR UPDATE SKIP LOCKED) AS ready
    WHERE NOT (SELECT yes FROM pending) AND expires > $4 AND delay_until <= $4
    LIMIT $5
), marked AS (
    UPDATE messages AS m
    SET claim_id = $3::uuid, claim_expires = $6::float8, claim_count = m.claim_count + 1,
        expires = CASE WHEN m.expires < $6 THEN $6 + $8::integer ELSE m.expires END,
        ttl = CASE WHEN m.expires < $6 THEN $7::integer + $8 ELSE m.ttl END
    WHERE m.ctid = ANY(ARRAY(SELECT tid FROM picked))
    RETURNING m.seq, m.id::text, m.body, m.ttl, m.created, m.expires, m.client_id,
              m.claim_id::text, m.claim_expires, m.claim_count, m.delay_until
), claim AS (
    INSERT INTO claims (id, project, queue, ttl, grace, updated, expires)
    SELECT $3, $1, (SELECT k FROM fresh), $7, $8, $4, $6 WHERE EXISTS (SELECT FROM marked)
)
SELECT pending.yes, (SELECT v FROM q),
       (SELECT metadata FROM q WHERE NOT EXISTS (SELECT FROM fresh)), marked.*
FROM pending LEFT JOIN marked ON true ORDER BY marked.seq;

-- Marks locked rows and records the claim, in one statement.
-- name: message_claim
WITH claim AS (
    INSERT INTO claims (id, project, queue, ttl, grace, updated, expires)
    VALUES ($1, $2, (SELECT rows_key FROM queues WHERE project = $2 AND name = $3),
            $4, $5, $6, $7)
)
UPDATE messages AS m
SET claim_id = $1, claim_expires = $7, claim_count = m.claim_count + 1,
    expires = u.expires, ttl = u.ttl
FROM unnest($8::tid[], $9::float8[], $10::integer[]) AS u (tid, expires, ttl)
WHERE m.ctid = u.tid;

-- name: message_extend_claim
UPDATE messages AS m
SET claim_expires = $1, expires = u.expires, ttl = u.ttl
FROM unnest($2::tid[], $3::float8[], $4::integer[]) AS u (tid, expires, ttl)
WHERE m.ctid = u.tid;

-- name: claim_get
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $2 AND name = $3)
SELECT id::text, ttl, grace, updated, expires FROM claims
WHERE id = $1 AND (project, queue) IS NOT DISTINCT FROM ($2::text, (SELECT k FROM q))
  AND expires > $4;

-- name: claim_messages
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $2 AND name = $3)
SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
       claim_expires, claim_count, delay_until
FROM messages
WHERE claim_id = $1 AND (project, queue) IS NOT DISTINCT FROM ($2::text, (SELECT k FROM q))
  AND claim_expires > $4 AND expires > $4
ORDER BY seq;

-- name: claim_messages_for_update
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $2 AND name = $3)
SELECT seq, id::text, body, ttl, created, expires, client_id, claim_id::text,
       claim_expires, claim_count, delay_until, ctid
FROM messages
WHERE claim_id = $1 AND (project, queue) IS NOT DISTINCT FROM ($2::text, (SELECT k FROM q))
  AND claim_expires > $4 AND expires > $4
ORDER BY seq
FOR UPDATE;

-- The claim row is locked before its messages by renew and release alike.
-- name: claim_renew
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $2 AND name = $3)
UPDATE claims SET ttl = $5, grace = $6, updated = $4, expires = $7
WHERE id = $1 AND (project, queue) IS NOT DISTINCT FROM ($2::text, (SELECT k FROM q))
  AND expires > $4;

-- name: claim_delete
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $2 AND name = $3)
DELETE FROM claims
WHERE id = $1 AND (project, queue) IS NOT DISTINCT FROM ($2::text, (SELECT k FROM q));

-- By id, not ctid, for the reason given at message_delete_by_ids. Signals ($4 channel,
-- $5 payload) only when it released something.
-- name: claim_release_messages
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $2 AND name = $3
), released AS (
    UPDATE messages SET claim_id = NULL, claim_expires = 0
    WHERE id = ANY(ARRAY(
        SELECT id FROM messages
        WHERE claim_id = $1
          AND (project, queue) IS NOT DISTINCT FROM ($2::text, (SELECT k FROM q))
        ORDER BY seq
        FOR UPDATE))
    RETURNING 1
)
SELECT pg_notify($4, $5) WHERE EXISTS (SELECT FROM released);

-- Garbage collection works in bounded chunks so that no statement holds many locks
-- for long; rows someone is working on are left for the next run.

-- name: gc_messages
WITH gone AS (
    -- By ctid: the rows are locked, so their addresses hold until the delete.
    -- "expires > 0" (always true) names the partial index messages_expiry.
    DELETE FROM messages WHERE ctid = ANY(ARRAY(
        SELECT ctid FROM messages WHERE expires > 0 AND expires <= $1
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM gone;

-- A message's claim mark always names an existing claim row with the same expiry,
-- so clearing the marks of the claims removed here leaves no lapsed mark behind.
-- name: gc_claims
WITH gone AS (
    DELETE FROM claims WHERE id IN (
        SELECT id FROM claims WHERE expires <= $1
        LIMIT $2
        FOR UPDATE SKIP LOCKED)
    RETURNING id
), unmarked AS (
    -- An array, not IN: a join could be planned as a walk of every message.
    UPDATE messages SET claim_id = NULL, claim_expires = 0
    WHERE claim_id = ANY(ARRAY(SELECT id FROM gone))
)
SELECT count(*) FROM gone;
