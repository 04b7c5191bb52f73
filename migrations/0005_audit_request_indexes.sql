-- The audit log's lookup indexes cover request rows only. Every listing
-- filters on `kind = 'request'`, and an outcome row (half of all rows) has
-- no connection, plugin or project: indexing it put three NULL keys and a
-- time into four more B-tree pages, each written whole into the WAL at
-- every commit. Partial indexes keep outcome rows out of them.
DROP INDEX audit_log_connection;
DROP INDEX audit_log_plugin;
DROP INDEX audit_log_project;
DROP INDEX audit_log_time;
CREATE INDEX audit_log_connection ON audit_log (connection_id, seq) WHERE kind = 'request';
CREATE INDEX audit_log_plugin ON audit_log (plugin_id, seq) WHERE kind = 'request';
CREATE INDEX audit_log_project ON audit_log (project, seq) WHERE kind = 'request';
CREATE INDEX audit_log_time ON audit_log (time) WHERE kind = 'request';
