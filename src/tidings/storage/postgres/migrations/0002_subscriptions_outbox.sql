-- Subscriptions, the outbox of pushes owed to them, and the pushes that failed for good.

CREATE TABLE subscriptions (
    id         uuid PRIMARY KEY,
    project    text COLLATE "C" NOT NULL,
    source     text COLLATE "C" NOT NULL,
    subscriber text NOT NULL,
    ttl        integer NOT NULL,
    options    text NOT NULL,                  -- JSON object, kept as sent
    confirmed  boolean NOT NULL DEFAULT false,
    updated    double precision NOT NULL,
    expires    double precision NOT NULL
);

-- Paging by id, and finding a subscriber among the live ones of a source.
CREATE INDEX subscriptions_by_source ON subscriptions (project, source, (id::text));
CREATE INDEX subscriptions_by_subscriber ON subscriptions (project, source, subscriber);
CREATE INDEX subscriptions_by_expiry ON subscriptions (expires);

-- A leased delivery has its due time pushed past the lease; done ones are deleted.
CREATE TABLE deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project         text COLLATE "C" NOT NULL,
    source          text COLLATE "C" NOT NULL,
    subscription_id uuid NOT NULL,
    kind            text NOT NULL,
    message_id      uuid,
    payload         bytea NOT NULL,
    ttl             integer NOT NULL DEFAULT 0,
    delay           integer NOT NULL DEFAULT 0,
    attempts        integer NOT NULL DEFAULT 0,
    due             double precision NOT NULL
);

CREATE INDEX deliveries_by_due ON deliveries (due);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id);
CREATE INDEX deliveries_by_source ON deliveries (project, source);

CREATE TABLE delivery_failures (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    project         text COLLATE "C" NOT NULL,
    source          text COLLATE "C" NOT NULL,
    subscription_id uuid NOT NULL,
    kind            text NOT NULL,
    message_id      uuid,
    attempts        integer NOT NULL,
    error           text NOT NULL,
    failed          double precision NOT NULL
);

CREATE INDEX delivery_failures_by_subscription
    ON delivery_failures (project, source, subscription_id, id);
