-- A notification's body is stored once per (project, source, message), however many
-- subscriptions are owed it: their deliveries carry an empty payload and take reads the
-- body from here. Deliveries written before this migration keep their payload inline
-- (and have no row here), so they are delivered as they were.
CREATE TABLE notification_bodies (
    id         INTEGER PRIMARY KEY,  -- a rowid table: bodies are large (WITHOUT ROWID is not)
    project    TEXT NOT NULL,
    source     TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body       BLOB NOT NULL
);

CREATE UNIQUE INDEX notification_bodies_by_message
    ON notification_bodies (project, source, message_id);

-- Whether any delivery still owes a message, in one index probe.
CREATE INDEX deliveries_by_message ON deliveries (message_id);

-- Whatever deletes a delivery (done, failed, dropped at take, its subscription deleted
-- or purged) removes the body with the message's last delivery, in the same
-- transaction: one probe per delivery, never a scan of the bodies.
CREATE TRIGGER deliveries_release_body AFTER DELETE ON deliveries
WHEN old.message_id IS NOT NULL
BEGIN
    DELETE FROM notification_bodies
    WHERE project = old.project AND source = old.source AND message_id = old.message_id
      AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = old.message_id);
END;
