-- Queues, messages and claims of every project, in the schema named by the store URI.
-- Times are POSIX seconds (double precision), always supplied by the caller.
-- Names use the "C" collation so that listing order is bytewise, as in every driver,
-- and "name > marker" is a plain index range.

CREATE TABLE queues (
    project  text COLLATE "C" NOT NULL,
    name     text COLLATE "C" NOT NULL,
    metadata text NOT NULL,              -- JSON object, kept as sent (key order too)
    created  double precision NOT NULL,
    PRIMARY KEY (project, name)
);

-- seq is the global identity sequence: monotonic, so it gives FIFO per queue and
-- serves as the listing marker. claim_expires is 0 whenever claim_id is NULL.
-- The primary key leads with the queue: it is the queue's post order (listing with
-- claimed messages, stats, purge), and there is deliberately no index on seq alone,
-- which the planner would otherwise walk across a whole one-queue table, filtering.
CREATE TABLE messages (
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    id            uuid NOT NULL UNIQUE,
    project       text COLLATE "C" NOT NULL,
    queue         text COLLATE "C" NOT NULL,
    body          bytea NOT NULL,          -- JSON, stored as received
    client_id     text NOT NULL,
    ttl           integer NOT NULL,
    created       double precision NOT NULL,
    expires       double precision NOT NULL,
    delay_until   double precision NOT NULL DEFAULT 0,
    claim_id      uuid,
    claim_expires double precision NOT NULL DEFAULT 0,
    claim_count   integer NOT NULL DEFAULT 0,
    PRIMARY KEY (project, queue, seq)
);

-- Claim, pop and default listing: only never-claimed or released messages, so that
-- in-flight claims piling up at the head of a queue are not walked over every time.
CREATE INDEX messages_free ON messages (project, queue, seq) WHERE claim_id IS NULL;
-- Messages whose claim has lapsed are claimable too: found by claim expiry, not walked.
CREATE INDEX messages_claim_expiry ON messages (project, queue, claim_expires)
    WHERE claim_id IS NOT NULL;
-- Claim get, renew, release and garbage collection of claim marks.
CREATE INDEX messages_by_claim ON messages (claim_id) WHERE claim_id IS NOT NULL;
-- Garbage collection of expired messages.
CREATE INDEX messages_by_expiry ON messages (expires);

CREATE TABLE claims (
    id      uuid PRIMARY KEY,
    project text COLLATE "C" NOT NULL,
    queue   text COLLATE "C" NOT NULL,
    ttl     integer NOT NULL,
    grace   integer NOT NULL,
    updated double precision NOT NULL,
    expires double precision NOT NULL
);

CREATE INDEX claims_by_queue ON claims (project, queue);
CREATE INDEX claims_by_expiry ON claims (expires);
