-- A fair, bounded outbox. Takers visit projects by their earliest due delivery
-- (outbox_projects) and then take from one project at a time through (project, due),
-- so no project's backlog is scanned to reach another's. A score may be lower than the
-- project's real earliest due time (a visit then finds nothing and fixes it), never
-- higher: whatever makes a delivery due sooner lowers it in the same transaction.
CREATE TABLE outbox_projects (
    project TEXT PRIMARY KEY,
    due     REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX outbox_projects_by_due ON outbox_projects (due);

INSERT INTO outbox_projects (project, due)
SELECT project, min(due) FROM deliveries GROUP BY project;

CREATE INDEX deliveries_by_project_due ON deliveries (project, due);
-- Purging a source's subscriptions deletes what is owed to them without a full scan.
CREATE INDEX deliveries_by_source ON deliveries (project, source);
DROP INDEX deliveries_by_due;

-- Failures are pruned by age ([notification] failure_retention) in chunks.
CREATE INDEX delivery_failures_by_age ON delivery_failures (failed);
