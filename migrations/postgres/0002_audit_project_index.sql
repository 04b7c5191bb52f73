-- As migrations/audit/0002_project_index.sql: the project index covers
-- request rows that name a project, so a call without one writes no entry.
DROP INDEX audit_log_project;
CREATE INDEX audit_log_project ON audit_log (project, seq)
    WHERE kind = 'request' AND project IS NOT NULL;
