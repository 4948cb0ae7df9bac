-- Named queries of the PostgreSQL change feed (see feed.py). Readiness is signalled by
-- the statements of queries.sql that make messages ready, with pg_notify, in the
-- transaction that does it; these are the feed's own.

-- When time makes a queue's next message ready: its earliest claim expiry or delay end.
-- Each probe states exactly the predicate of its partial index (migration 0005:
-- messages_lapsing, messages_delayed) and reads one entry of it; least() ignores the
-- probe that found nothing. $1 project, $2 queue.
-- name: feed_next_ready
WITH q AS (
    SELECT rows_key AS k FROM queues WHERE project = $1 AND name = $2)
SELECT least(
    (SELECT claim_expires FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
         AND claim_expires > 0
     ORDER BY claim_expires LIMIT 1),
    (SELECT delay_until FROM messages WHERE project = $1 AND queue = (SELECT k FROM q)
         AND delayed
     ORDER BY delay_until LIMIT 1));

-- $1 channel, $2 payload.
-- name: feed_signal
SELECT pg_notify($1, $2);

-- Posts' signals (signals.py), in one statement. $1 channel, $2 payloads.
-- name: feed_signal_many
SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload;

-- One statement, so one transaction: the node hears of the row only once it is there.
-- $1 node, $2 payload, $3 now, $4 relay channel.
-- name: relay_send
WITH sent AS (
    INSERT INTO feed_relay (node, payload, at) VALUES ($1, $2, $3))
SELECT pg_notify($4, $1);

-- Up to $2 of node $1's oldest rows; the caller orders them by id.
-- name: relay_take
DELETE FROM feed_relay WHERE id = ANY(ARRAY(
    SELECT id FROM feed_relay WHERE node = $1
    ORDER BY id
    LIMIT $2
    FOR UPDATE SKIP LOCKED))
RETURNING id, payload;

-- Rows sent before $1 (nobody took them: their node is gone), $2 at most.
-- name: relay_gc
WITH gone AS (
    DELETE FROM feed_relay WHERE id = ANY(ARRAY(
        SELECT id FROM feed_relay WHERE at <= $1
        LIMIT $2
        FOR UPDATE SKIP LOCKED))
    RETURNING 1
)
SELECT count(*) FROM gone;
