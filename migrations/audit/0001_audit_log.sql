-- The audit log, in its own database file (audit.db) next to airlock.db.
-- Logs written before it had its own file sit in airlock.db's audit_log
-- (migration 0001 there); opening the log moves them here unchanged.
CREATE TABLE audit_log (
    seq             INTEGER PRIMARY KEY,
    kind            TEXT NOT NULL CHECK (kind IN ('request', 'outcome', 'credential', 'event')),
    time            TEXT NOT NULL,
    actor           TEXT,
    project         TEXT,
    plugin_id       TEXT,
    plugin_version  TEXT,
    connection_id   TEXT,
    method          TEXT,
    url             TEXT,                   -- query values removed
    decision        TEXT,                   -- 'allowed' | 'denied'
    reason          TEXT,
    credential_used INTEGER,
    request_bytes   INTEGER,
    request_sha256  TEXT,
    request_seq     INTEGER,                -- outcome rows: the request row
    status          INTEGER,
    response_bytes  INTEGER,
    duration_ms     INTEGER,
    error           TEXT,
    detail          TEXT,                   -- JSON, e.g. redaction counts
    prev_hash       TEXT NOT NULL,
    hash            TEXT NOT NULL
);

-- Lookup indexes cover request rows only. Every listing filters on
-- `kind = 'request'`, and an outcome row (half of all rows) has no
-- connection, plugin or project: indexing it put three NULL keys and a time
-- into four more B-tree pages, each written whole into the WAL at every
-- commit.
CREATE INDEX audit_log_connection ON audit_log (connection_id, seq) WHERE kind = 'request';
CREATE INDEX audit_log_plugin ON audit_log (plugin_id, seq) WHERE kind = 'request';
CREATE INDEX audit_log_project ON audit_log (project, seq) WHERE kind = 'request';
CREATE INDEX audit_log_time ON audit_log (time) WHERE kind = 'request';
