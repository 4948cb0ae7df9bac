-- Reads of READY messages keep to their partial indexes whatever ANALYZE saw (issue 8).
--
-- The primary key (project, queue, seq) can serve any statement about one queue in post
-- order, filtering. Once ANALYZE has found most of a queue READY (claim_expires = 0 AND
-- NOT delayed), the planner costs messages_ready at about the primary key's size, and
-- after churn has bloated it (claims and releases split its pages; the primary key's
-- unchanged keys are cleaned bottom-up) it takes the primary key instead: a claim or a
-- listing then walks every in-flight message at the head of the queue. Without
-- statistics on these two columns the partial indexes' predicates keep the default
-- (small) selectivity, so the index named by a statement's predicate stays the cheapest,
-- as queries.sql assumes. Statistics gathered before this migration stay until dropped.
ALTER TABLE messages ALTER COLUMN claim_expires SET STATISTICS 0;
ALTER TABLE messages ALTER COLUMN delayed SET STATISTICS 0;
