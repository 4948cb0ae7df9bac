-- Posts, claims and message deletes in one round trip (issue 12).
--
-- A node keeps the queue metadata it read, with the queue's metadata_version
-- (metadata.py): a post prepares its batch from it, a claim derives its dead-letter
-- policy from it, and the one statement that posts or claims checks the version it was
-- given against the queue row it reads. When they differ it stores or claims nothing
-- and returns the metadata in force, for the caller to prepare again: a metadata change
-- made on any node is honoured by the very next post or claim.
--
-- A version is never reused: the sequence gives every queue row a new one when it is
-- made (a queue deleted and made again with other metadata cannot pass for the old)
-- and the trigger another one whenever its metadata changes, whoever changes it.
CREATE SEQUENCE queue_metadata_versions;

-- A volatile default: every existing queue gets a version of its own.
ALTER TABLE queues ADD COLUMN metadata_version bigint NOT NULL
    DEFAULT nextval('queue_metadata_versions');

CREATE FUNCTION queue_metadata_versioned() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    NEW.metadata_version := nextval('queue_metadata_versions');
    RETURN NEW;
END $$;

CREATE TRIGGER queues_metadata_versioned BEFORE UPDATE OF metadata ON queues
FOR EACH ROW WHEN (OLD.metadata IS DISTINCT FROM NEW.metadata)
EXECUTE FUNCTION queue_metadata_versioned();

-- A post, whole: one call, one round trip, one transaction (its own, as a statement).
-- The steps and their order are those of the transaction it replaces (several
-- statements, each with a snapshot of its own under READ COMMITTED, as here):
--   1. the queue row is share-locked (a metadata change, delete or purge waits for the
--      batch) and its version compared with p_version, the one the batch was prepared
--      from. NULL means "prepared from {} for a queue that does not exist": the queue is
--      made then, its rows filed under its name, or under name#p_spare_key while rows
--      of an earlier queue of that name are still being removed (as queue_insert);
--   2. the batch goes in, in the order given (seq). It does not notify the queue's
--      watchers: the caller signals them once this has committed (signals.py says why);
--   3. with p_audience 'all' or 'confirmed' (confirmed subscriptions only), one
--      notification per message is owed to each admitted live subscription, due when
--      its delay ends, each body stored once; when any is owed, the project's outbox
--      lock is held shared and its score lowered (outbox_share and outbox_lower of
--      subscriptions.sql, whose comments say why, in that order).
-- Returns o_stored; when false, nothing was written and (o_version, o_metadata) is the
-- metadata in force, both NULL when the queue does not exist (prepare from {} and post
-- with p_version NULL). o_owed: notifications were owed.
--
-- Sessions plan every statement for its values (database.py: plan_cache_mode), for those
-- whose best plan depends on "now". None here does (keyed reads, inserts, one queue's
-- subscriptions), so this function lets PostgreSQL reuse their plans, as by default:
-- planning them again at every call cost about a third of a post.
CREATE FUNCTION post_messages(
    p_project text, p_queue text, p_version bigint, p_spare_key text, p_client text,
    p_now double precision, p_ids uuid[], p_bodies bytea[], p_ttls integer[],
    p_delays integer[], p_audience text,
    OUT o_stored boolean, OUT o_version bigint, OUT o_metadata text, OUT o_owed boolean)
LANGUAGE plpgsql SET search_path FROM CURRENT SET plan_cache_mode = auto AS $$
DECLARE
    v_key text;
    v_owed bigint;
    v_due double precision;
BEGIN
    o_stored := false;
    o_owed := false;
    SELECT rows_key, metadata_version, metadata INTO v_key, o_version, o_metadata
    FROM queues WHERE project = p_project AND name = p_queue
    FOR SHARE;
    IF NOT FOUND THEN
        IF p_version IS NOT NULL THEN
            RETURN;  -- gone since the caller read it
        END IF;
        INSERT INTO queues (project, name, metadata, created, rows_key)
        VALUES (p_project, p_queue, '{}', p_now,
                CASE WHEN EXISTS (SELECT FROM retired_keys
                                  WHERE project = p_project AND queue = p_queue)
                     THEN p_queue || '#' || p_spare_key ELSE p_queue END)
        ON CONFLICT (project, name) DO NOTHING
        RETURNING rows_key, metadata_version INTO v_key, o_version;
        IF NOT FOUND THEN
            -- Made meanwhile by someone else (whose commit the insert waited for).
            SELECT metadata_version, metadata INTO o_version, o_metadata
            FROM queues WHERE project = p_project AND name = p_queue;
            RETURN;
        END IF;
    ELSIF o_version IS DISTINCT FROM p_version THEN
        RETURN;
    END IF;
    o_stored := true;
    o_metadata := NULL;
    IF cardinality(p_ids) = 0 THEN
        RETURN;
    END IF;

    INSERT INTO messages (id, project, queue, body, client_id, ttl, created, expires,
                          delay_until, delayed, claim_count)
    SELECT b.id, p_project, v_key, b.body, p_client, b.ttl, p_now, p_now + b.ttl,
           b.delay_until, b.delay_until > 0, 0
    FROM (SELECT m.*, CASE WHEN m.delay <> 0 THEN p_now + m.delay ELSE 0 END AS delay_until
          FROM unnest(p_ids, p_bodies, p_ttls, p_delays)
               WITH ORDINALITY AS m (id, body, ttl, delay, position)) AS b
    ORDER BY b.position;

    IF p_audience = 'nobody' THEN
        RETURN;
    END IF;
    WITH owed AS (
        INSERT INTO deliveries (project, source, subscription_id, kind, message_id,
                                payload, ttl, delay, due)
        SELECT p_project, p_queue, s.id, 'notification', m.id, ''::bytea, m.ttl, m.delay,
               p_now + m.delay
        FROM subscriptions AS s
        CROSS JOIN unnest(p_ids, p_ttls, p_delays) AS m (id, ttl, delay)
        WHERE s.project = p_project AND s.source = p_queue AND s.expires > p_now
          AND (p_audience <> 'confirmed' OR s.confirmed)
        RETURNING 1
    ), bodies AS (
        INSERT INTO notification_bodies (project, source, message_id, body)
        SELECT p_project, p_queue, m.id, m.body FROM unnest(p_ids, p_bodies) AS m (id, body)
        WHERE EXISTS (SELECT FROM owed)
    )
    SELECT count(*) INTO v_owed FROM owed;
    IF v_owed > 0 THEN
        o_owed := true;
        PERFORM pg_advisory_xact_lock_shared(
            hashtextextended('tidings-outbox' || chr(31) || p_project, 0));
        v_due := p_now + (SELECT min(d) FROM unnest(p_delays) AS d);
        INSERT INTO outbox_projects AS o (project, due)
        SELECT p_project, v_due
        WHERE NOT EXISTS (SELECT FROM outbox_projects WHERE project = p_project AND due <= v_due)
        ON CONFLICT (project) DO UPDATE SET due = least(o.due, excluded.due);
    END IF;
END $$;

-- A delete of one message, whole: one call, one round trip, one transaction. As the
-- transaction it replaces: the live message is locked (found by its id, in the queue's
-- key), then deleted if the caller may (it holds the message's live claim, or names no
-- claim and the message is not claimed; storage.rules.check_delete). Otherwise nothing
-- changes, and the row tells whether p_claim names a live claim of the queue, for the
-- caller's rules to say why. p_claim: a canonical claim id, or NULL for none.
-- Returns no row when there is no such live message, else o_deleted, o_claim_live and
-- the message (queries.sql's message columns). Keyed reads only: plans are reused, as
-- in post_messages.
CREATE FUNCTION delete_message(
    p_project text, p_queue text, p_id uuid, p_claim uuid, p_now double precision,
    OUT o_deleted boolean, OUT o_claim_live boolean, OUT o_seq bigint, OUT o_id text,
    OUT o_body bytea, OUT o_ttl integer, OUT o_created double precision,
    OUT o_expires double precision, OUT o_client_id text, OUT o_claim_id text,
    OUT o_claim_expires double precision, OUT o_claim_count integer,
    OUT o_delay_until double precision)
RETURNS SETOF record
LANGUAGE plpgsql SET search_path FROM CURRENT SET plan_cache_mode = auto AS $$
DECLARE
    v_key text;
    v_tid tid;
    v_claim uuid;
BEGIN
    SELECT rows_key INTO v_key FROM queues WHERE project = p_project AND name = p_queue;
    SELECT m.ctid, m.seq, m.id::text, m.body, m.ttl, m.created, m.expires, m.client_id,
           m.claim_id, m.claim_expires, m.claim_count, m.delay_until
    INTO v_tid, o_seq, o_id, o_body, o_ttl, o_created, o_expires, o_client_id, v_claim,
         o_claim_expires, o_claim_count, o_delay_until
    FROM messages AS m
    WHERE m.id = p_id AND (m.project, m.queue) IS NOT DISTINCT FROM (p_project, v_key)
      AND m.expires > p_now
    FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    o_claim_id := v_claim::text;
    o_claim_live := false;
    IF (CASE WHEN v_claim IS NOT NULL AND o_claim_expires > p_now THEN v_claim = p_claim
             ELSE p_claim IS NULL END) THEN
        DELETE FROM messages WHERE ctid = v_tid;
        o_deleted := true;
    ELSE
        o_deleted := false;
        o_claim_live := p_claim IS NOT NULL AND EXISTS (
            SELECT FROM claims
            WHERE id = p_claim AND (project, queue) IS NOT DISTINCT FROM (p_project, v_key)
              AND expires > p_now);
    END IF;
    RETURN NEXT;
END $$;
