-- A notification's body is stored once per (project, source, message), however many
-- subscriptions are owed it: their deliveries carry an empty payload and take reads the
-- body from here. Deliveries written before this migration keep their payload inline
-- (and have no row here), so they are delivered as they were.
CREATE TABLE notification_bodies (
    project    text COLLATE "C" NOT NULL,
    source     text COLLATE "C" NOT NULL,
    message_id uuid NOT NULL,
    body       bytea NOT NULL,
    PRIMARY KEY (project, source, message_id)
);

-- Whether any delivery still owes a message, in one index probe.
CREATE INDEX deliveries_by_message ON deliveries (message_id);

-- Whatever deletes deliveries (done, failed, dropped at take, their subscription
-- deleted or purged) removes the bodies of the messages it left without one, in the
-- same transaction: one probe per message, never a scan of the bodies. The bodies are
-- locked first, in one order, so that of two transactions removing the last two
-- deliveries of a message the second waits for the first and then sees both gone
-- (each statement of a function takes a fresh snapshot under READ COMMITTED).
CREATE FUNCTION release_notification_bodies() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM 1 FROM notification_bodies AS b
    WHERE (b.project, b.source, b.message_id) IN (
        SELECT project, source, message_id FROM gone WHERE message_id IS NOT NULL)
    ORDER BY b.project, b.source, b.message_id
    FOR UPDATE OF b;
    DELETE FROM notification_bodies AS b
    WHERE (b.project, b.source, b.message_id) IN (
        SELECT project, source, message_id FROM gone WHERE message_id IS NOT NULL)
      AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.message_id = b.message_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER deliveries_release_bodies AFTER DELETE ON deliveries
REFERENCING OLD TABLE AS gone
FOR EACH STATEMENT EXECUTE FUNCTION release_notification_bodies();
