-- The project index covers request rows that name a project. Most calls are
-- resolved without one, and indexing their NULL key wrote one more B-tree
-- page into the WAL at every commit for a lookup no reader makes: a filter
-- `project = ?` implies `project IS NOT NULL`, so it still uses this index.
DROP INDEX audit_log_project;
CREATE INDEX audit_log_project ON audit_log (project, seq)
    WHERE kind = 'request' AND project IS NOT NULL;
