-- A fair, bounded outbox. Takers visit projects by their earliest due delivery
-- (outbox_projects) and then take from one project at a time through (project, due),
-- so no project's backlog is scanned to reach another's. A score may be lower than the
-- project's real earliest due time (a visit then finds nothing and fixes it), never
-- higher: whatever owes or re-dues a delivery lowers it holding a per-project advisory
-- lock shared, and a taker raises it only when it gets that lock exclusively at once.
CREATE TABLE outbox_projects (
    project text COLLATE "C" PRIMARY KEY,
    due     double precision NOT NULL
);

CREATE INDEX outbox_projects_by_due ON outbox_projects (due);

INSERT INTO outbox_projects (project, due)
SELECT project, min(due) FROM deliveries GROUP BY project;

CREATE INDEX deliveries_by_project_due ON deliveries (project, due);
DROP INDEX deliveries_by_due;

-- Failures are pruned by age ([notification] failure_retention) in chunks.
CREATE INDEX delivery_failures_by_age ON delivery_failures (failed);

-- Zaqar's rule only keeps expiry before the year 9999: ttls past int4 must fit.
ALTER TABLE subscriptions ALTER COLUMN ttl TYPE bigint;
