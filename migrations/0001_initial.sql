-- airlock schema, version 1.
--
-- Ownership: the vault owns key_versions and secrets; the audit log owns
-- audit_log; the store owns the rest. Timestamps are RFC 3339 UTC text.
-- Ids are random 128-bit lower-case hex unless noted.

-- Data-encryption keys, one per version, each wrapped (AES-256-GCM) by the
-- key-encryption key. Retiring a version deletes its row.
CREATE TABLE key_versions (
    version     INTEGER PRIMARY KEY,
    wrapped_key BLOB    NOT NULL,
    created_at  TEXT    NOT NULL,
    active      INTEGER NOT NULL CHECK (active IN (0, 1))
);
-- At most one active version.
CREATE UNIQUE INDEX key_versions_one_active ON key_versions (active) WHERE active = 1;

-- Vault metadata: the Argon2id salt when the KEK comes from a passphrase, and
-- a check value sealed under the KEK so a wrong master key is detected at
-- start-up before anything is written.
CREATE TABLE vault_meta (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

-- Installed plugins. The .wasm lives in <data-dir>/plugins/<sha256>.wasm.
CREATE TABLE plugins (
    id             TEXT PRIMARY KEY,
    version        TEXT NOT NULL,
    sha256         TEXT NOT NULL,
    manifest       TEXT NOT NULL,           -- JSON of the parsed manifest
    approved_grant TEXT NOT NULL,           -- JSON list of approved egress rules
    installed_at   TEXT NOT NULL,
    updated_at     TEXT NOT NULL
);

CREATE TABLE connections (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    plugin_id    TEXT NOT NULL REFERENCES plugins (id) ON DELETE RESTRICT,
    settings     TEXT NOT NULL,             -- JSON object of non-secret settings
    auth_kind    TEXT NOT NULL CHECK (auth_kind IN ('none', 'basic', 'api-key', 'bearer', 'oauth2')),
    auth_config  TEXT NOT NULL DEFAULT '{}',-- JSON, non-secret: username, header, prefix
    is_global    INTEGER NOT NULL CHECK (is_global IN (0, 1)),
    status       TEXT NOT NULL CHECK (status IN ('active', 'paused', 'needs-reauth')),
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- Projects a non-global connection is scoped to.
CREATE TABLE connection_projects (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    project       TEXT NOT NULL,
    PRIMARY KEY (connection_id, project)
);
CREATE INDEX connection_projects_by_project ON connection_projects (project);

-- Organisation-level OAuth app credentials per plugin (client secret in secrets).
CREATE TABLE oauth_apps (
    id         TEXT PRIMARY KEY,
    plugin_id  TEXT NOT NULL UNIQUE,
    client_id  TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- Encrypted secrets. Exactly one owner. The ciphertext's associated data
-- binds it to (id, field, key_version): copied to another row or field it
-- fails to decrypt.
CREATE TABLE secrets (
    id            TEXT PRIMARY KEY,
    connection_id TEXT REFERENCES connections (id) ON DELETE CASCADE,
    oauth_app_id  TEXT REFERENCES oauth_apps (id) ON DELETE CASCADE,
    field         TEXT NOT NULL,
    key_version   INTEGER NOT NULL REFERENCES key_versions (version),
    ciphertext    BLOB NOT NULL,
    updated_at    TEXT NOT NULL,
    CHECK ((connection_id IS NULL) <> (oauth_app_id IS NULL))
);
CREATE UNIQUE INDEX secrets_connection_field ON secrets (connection_id, field) WHERE connection_id IS NOT NULL;
CREATE UNIQUE INDEX secrets_app_field ON secrets (oauth_app_id, field) WHERE oauth_app_id IS NOT NULL;

-- Pending OAuth authorisations: single use, expiring. The PKCE verifier is
-- sealed by the vault (field 'pkce-verifier', bound to state_hash).
CREATE TABLE oauth_states (
    state_hash    TEXT PRIMARY KEY,         -- hex SHA-256 of the state value
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key_version   INTEGER NOT NULL REFERENCES key_versions (version),
    verifier      BLOB NOT NULL,
    redirect_uri  TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    expires_at    TEXT NOT NULL
);

-- Hash-chained audit log. Rows are only appended: a request row before the
-- request leaves, an outcome row after (referring to it by `request_seq`).
-- hash = SHA-256(prev_hash || canonical encoding of the row's other columns).
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
CREATE INDEX audit_log_connection ON audit_log (connection_id, seq);
CREATE INDEX audit_log_plugin ON audit_log (plugin_id, seq);
CREATE INDEX audit_log_project ON audit_log (project, seq);
CREATE INDEX audit_log_time ON audit_log (time);

CREATE TABLE sync_runs (
    id            TEXT PRIMARY KEY,
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    full          INTEGER NOT NULL CHECK (full IN (0, 1)),
    started_at    TEXT NOT NULL,
    finished_at   TEXT,
    status        TEXT NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    cursor        TEXT,                     -- cursor of the last committed page
    pages         INTEGER NOT NULL DEFAULT 0,
    records       INTEGER NOT NULL DEFAULT 0,
    error         TEXT
);
CREATE INDEX sync_runs_by_connection ON sync_runs (connection_id, started_at);

CREATE TABLE sync_records (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    updated_at    TEXT,
    data          TEXT NOT NULL,            -- JSON
    run_id        TEXT NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    synced_at     TEXT NOT NULL,
    PRIMARY KEY (connection_id, kind, record_id)
);

-- Small per-connection key/value state plugins keep between calls.
CREATE TABLE plugin_state (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (connection_id, key)
);
