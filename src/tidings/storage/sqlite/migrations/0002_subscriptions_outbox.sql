-- Subscriptions, the outbox of pushes owed to them, and the pushes that failed for good.

CREATE TABLE subscriptions (
    id         TEXT PRIMARY KEY,
    project    TEXT NOT NULL,
    source     TEXT NOT NULL,
    subscriber TEXT NOT NULL,
    ttl        INTEGER NOT NULL,
    options    TEXT NOT NULL,        -- JSON object
    confirmed  INTEGER NOT NULL DEFAULT 0,
    updated    REAL NOT NULL,
    expires    REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX subscriptions_by_source ON subscriptions (project, source, id);
CREATE INDEX subscriptions_by_subscriber ON subscriptions (project, source, subscriber);
CREATE INDEX subscriptions_by_expiry ON subscriptions (expires);

-- A leased delivery has its due time pushed past the lease; done ones are deleted.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project         TEXT NOT NULL,
    source          TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    kind            TEXT NOT NULL,
    message_id      TEXT,
    payload         BLOB NOT NULL,
    ttl             INTEGER NOT NULL DEFAULT 0,
    delay           INTEGER NOT NULL DEFAULT 0,
    attempts        INTEGER NOT NULL DEFAULT 0,
    due             REAL NOT NULL
);

CREATE INDEX deliveries_by_due ON deliveries (due);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id);

CREATE TABLE delivery_failures (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    project         TEXT NOT NULL,
    source          TEXT NOT NULL,
    subscription_id TEXT NOT NULL,
    kind            TEXT NOT NULL,
    message_id      TEXT,
    attempts        INTEGER NOT NULL,
    error           TEXT NOT NULL,
    failed          REAL NOT NULL
);

CREATE INDEX delivery_failures_by_subscription
    ON delivery_failures (project, source, subscription_id, id);
