-- Payloads relayed from one node to another (the change feed, issue 10).
--
-- A NOTIFY carries less than 8000 bytes, a relayed payload up to about 300 KiB: the
-- sender inserts the payload here and notifies the schema's relay channel with the
-- node's id, in one transaction; that node takes its rows with DELETE ... RETURNING
-- (also after reconnecting, for what it missed). Rows of a node that is gone are
-- removed by garbage collection after a minute.
--
-- Unlogged: a relay is delivered at most once, so rows lost in a crash lose nothing
-- promised, and these short-lived payloads write no WAL.
CREATE UNLOGGED TABLE feed_relay (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    node    text COLLATE "C" NOT NULL,
    payload bytea NOT NULL,
    at      double precision NOT NULL        -- when it was sent, by the sender's clock
);

-- A node's rows in the order they were sent; rows by age for garbage collection.
CREATE INDEX feed_relay_by_node ON feed_relay (node, id);
CREATE INDEX feed_relay_by_age ON feed_relay (at);
