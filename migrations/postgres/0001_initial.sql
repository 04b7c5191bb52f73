-- The whole schema of the SQLite migrations 0001-0008, for PostgreSQL: the
-- same tables and columns, so the repositories' SQL runs on both. Integers
-- are BIGINT (the store binds 64-bit integers), bytes are BYTEA, timestamps
-- are fixed-width RFC 3339 text (text order is time order), booleans 0/1.
-- Text is COLLATE "C": compared and ordered byte by byte as SQLite does,
-- whatever locale the database was created with, so listings, pages and
-- time comparisons come out the same on both engines.

CREATE TABLE key_versions (
    version     BIGINT PRIMARY KEY,
    wrapped_key BYTEA  NOT NULL,
    created_at  TEXT COLLATE "C"   NOT NULL,
    active      BIGINT NOT NULL CHECK (active IN (0, 1))
);
CREATE UNIQUE INDEX key_versions_one_active ON key_versions (active) WHERE active = 1;

CREATE TABLE vault_meta (
    name  TEXT COLLATE "C" PRIMARY KEY,
    value BYTEA NOT NULL
);

CREATE TABLE plugins (
    id             TEXT COLLATE "C" PRIMARY KEY,
    version        TEXT COLLATE "C" NOT NULL,
    sha256         TEXT COLLATE "C" NOT NULL,
    manifest       TEXT COLLATE "C" NOT NULL,
    approved_grant TEXT COLLATE "C" NOT NULL,
    installed_at   TEXT COLLATE "C" NOT NULL,
    updated_at     TEXT COLLATE "C" NOT NULL,
    signer         TEXT COLLATE "C"
);

CREATE TABLE connections (
    id           TEXT COLLATE "C" PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL UNIQUE,
    plugin_id    TEXT COLLATE "C" NOT NULL REFERENCES plugins (id) ON DELETE RESTRICT,
    settings     TEXT COLLATE "C" NOT NULL,
    auth_kind    TEXT COLLATE "C" NOT NULL CHECK (auth_kind IN ('none', 'basic', 'api-key', 'bearer', 'oauth2')),
    auth_config  TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    is_global    BIGINT NOT NULL CHECK (is_global IN (0, 1)),
    status       TEXT COLLATE "C" NOT NULL CHECK (status IN ('active', 'paused', 'needs-reauth')),
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE connection_projects (
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    project       TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection_id, project)
);
CREATE INDEX connection_projects_by_project ON connection_projects (project);

CREATE TABLE oauth_apps (
    id            TEXT COLLATE "C" PRIMARY KEY,
    plugin_id     TEXT COLLATE "C" NOT NULL UNIQUE,
    client_id     TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    authorize_url TEXT COLLATE "C",
    token_url     TEXT COLLATE "C",
    issuer        TEXT COLLATE "C"
);

CREATE TABLE secrets (
    id            TEXT COLLATE "C" PRIMARY KEY,
    connection_id TEXT COLLATE "C" REFERENCES connections (id) ON DELETE CASCADE,
    oauth_app_id  TEXT COLLATE "C" REFERENCES oauth_apps (id) ON DELETE CASCADE,
    field         TEXT COLLATE "C" NOT NULL,
    key_version   BIGINT NOT NULL REFERENCES key_versions (version),
    ciphertext    BYTEA NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    CHECK ((connection_id IS NULL) <> (oauth_app_id IS NULL))
);
CREATE UNIQUE INDEX secrets_connection_field ON secrets (connection_id, field) WHERE connection_id IS NOT NULL;
CREATE UNIQUE INDEX secrets_app_field ON secrets (oauth_app_id, field) WHERE oauth_app_id IS NOT NULL;

CREATE TABLE oauth_states (
    state_hash    TEXT COLLATE "C" PRIMARY KEY,
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    key_version   BIGINT NOT NULL REFERENCES key_versions (version),
    verifier      BYTEA NOT NULL,
    redirect_uri  TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    expires_at    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE connection_oauth_endpoints (
    connection_id TEXT COLLATE "C" PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    authorize_url TEXT COLLATE "C",
    token_url     TEXT COLLATE "C",
    issuer        TEXT COLLATE "C",
    updated_at    TEXT COLLATE "C" NOT NULL
);

-- `rowid` is SQLite's implicit insertion order, which the repositories order
-- runs by; here it is an explicit column of the same name.
CREATE TABLE sync_runs (
    rowid         BIGSERIAL UNIQUE,
    id            TEXT COLLATE "C" PRIMARY KEY,
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    "full"        BIGINT NOT NULL CHECK ("full" IN (0, 1)),
    started_at    TEXT COLLATE "C" NOT NULL,
    finished_at   TEXT COLLATE "C",
    status        TEXT COLLATE "C" NOT NULL CHECK (status IN ('running', 'succeeded', 'failed')),
    cursor        TEXT COLLATE "C",
    pages         BIGINT NOT NULL DEFAULT 0,
    records       BIGINT NOT NULL DEFAULT 0,
    error         TEXT COLLATE "C"
);
CREATE INDEX sync_runs_by_connection ON sync_runs (connection_id, started_at);

CREATE TABLE sync_records (
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    kind          TEXT COLLATE "C" NOT NULL,
    record_id     TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C",
    data          TEXT COLLATE "C" NOT NULL,
    run_id        TEXT COLLATE "C" NOT NULL REFERENCES sync_runs (id) ON DELETE CASCADE,
    synced_at     TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (connection_id, kind, record_id)
);

CREATE TABLE plugin_state (
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    project       TEXT COLLATE "C",
    key           TEXT COLLATE "C" NOT NULL,
    value         TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX plugin_state_scope_key ON plugin_state (connection_id, project, key);
CREATE UNIQUE INDEX plugin_state_no_project_key ON plugin_state (connection_id, key)
    WHERE project IS NULL;

CREATE TABLE conversations (
    id            TEXT COLLATE "C" PRIMARY KEY,
    connection_id TEXT COLLATE "C" NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    title         TEXT COLLATE "C" NOT NULL,
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL,
    project       TEXT COLLATE "C"
);
CREATE INDEX conversations_by_scope ON conversations (connection_id, project, updated_at);

CREATE TABLE conversation_messages (
    conversation_id TEXT COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    role            TEXT COLLATE "C" NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT COLLATE "C" NOT NULL,
    model           TEXT COLLATE "C",
    created_at      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (conversation_id, seq)
);

CREATE TABLE chat_options (
    connection_id TEXT COLLATE "C" PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    redaction     BIGINT NOT NULL CHECK (redaction IN (0, 1)),
    system_prompt TEXT COLLATE "C",
    updated_at    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE api_tokens (
    id          TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT COLLATE "C" NOT NULL UNIQUE,
    token_hash  TEXT COLLATE "C" NOT NULL UNIQUE,
    role        TEXT COLLATE "C" NOT NULL CHECK (role IN ('admin', 'operator', 'user')),
    project     TEXT COLLATE "C",
    created_at  TEXT COLLATE "C" NOT NULL,
    revoked_at  TEXT COLLATE "C"
);

CREATE TABLE trusted_keys (
    name        TEXT COLLATE "C" PRIMARY KEY,
    public_key  TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT COLLATE "C" NOT NULL,
    plugin_id   TEXT COLLATE "C",
    added_at    TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX trusted_keys_scope ON trusted_keys (fingerprint, COALESCE(plugin_id, ''));

CREATE TABLE trust_policy (
    id                BIGINT PRIMARY KEY CHECK (id = 1),
    require_signature BIGINT NOT NULL CHECK (require_signature IN (0, 1)),
    updated_at        TEXT COLLATE "C"
);
INSERT INTO trust_policy (id, require_signature, updated_at) VALUES (1, 0, NULL);

-- Bumped by every change to what a plugin call reads on its way out, from
-- any server: readers cache those records next to the counter they were
-- read at (see store/cache.rs).
CREATE TABLE config_version (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    n  BIGINT NOT NULL
);
INSERT INTO config_version (id, n) VALUES (1, 0);

CREATE FUNCTION airlock_bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_version SET n = n + 1 WHERE id = 1;
    RETURN NULL;
END;
$$;

CREATE TRIGGER connections_changed AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_bump_config_version();
CREATE TRIGGER connection_projects_changed AFTER INSERT OR UPDATE OR DELETE ON connection_projects
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_bump_config_version();
CREATE TRIGGER plugins_changed AFTER INSERT OR UPDATE OR DELETE ON plugins
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_bump_config_version();
CREATE TRIGGER secrets_changed AFTER INSERT OR UPDATE OR DELETE ON secrets
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_bump_config_version();
CREATE TRIGGER key_versions_changed AFTER INSERT OR UPDATE OR DELETE ON key_versions
    FOR EACH STATEMENT EXECUTE FUNCTION airlock_bump_config_version();

-- The audit log: the same table as the SQLite audit file's (see
-- migrations/audit/0001_audit_log.sql), in the shared database so every
-- server appends to one chain (see audit/writer.rs).
CREATE TABLE audit_log (
    seq             BIGINT PRIMARY KEY,
    kind            TEXT COLLATE "C" NOT NULL CHECK (kind IN ('request', 'outcome', 'credential', 'event')),
    time            TEXT COLLATE "C" NOT NULL,
    actor           TEXT COLLATE "C",
    project         TEXT COLLATE "C",
    plugin_id       TEXT COLLATE "C",
    plugin_version  TEXT COLLATE "C",
    connection_id   TEXT COLLATE "C",
    method          TEXT COLLATE "C",
    url             TEXT COLLATE "C",
    decision        TEXT COLLATE "C",
    reason          TEXT COLLATE "C",
    credential_used BIGINT,
    request_bytes   BIGINT,
    request_sha256  TEXT COLLATE "C",
    request_seq     BIGINT,
    status          BIGINT,
    response_bytes  BIGINT,
    duration_ms     BIGINT,
    error           TEXT COLLATE "C",
    detail          TEXT COLLATE "C",
    prev_hash       TEXT COLLATE "C" NOT NULL,
    hash            TEXT COLLATE "C" NOT NULL
);
CREATE INDEX audit_log_connection ON audit_log (connection_id, seq) WHERE kind = 'request';
CREATE INDEX audit_log_plugin ON audit_log (plugin_id, seq) WHERE kind = 'request';
CREATE INDEX audit_log_project ON audit_log (project, seq) WHERE kind = 'request';
CREATE INDEX audit_log_time ON audit_log (time) WHERE kind = 'request';

-- The pinned bytes of every installed plugin file (SQLite migration 0008):
-- a plugin approved on one server runs on another, which compiles it from
-- these bytes after checking them against the pinned hash.
CREATE TABLE plugin_files (
    sha256 TEXT COLLATE "C" PRIMARY KEY,
    bytes  BYTEA NOT NULL
);

-- Leases (SQLite migration 0008): one holder at a time, across servers, for
-- an OAuth refresh or a connection's sync; ends on release or expiry.
CREATE TABLE leases (
    name       TEXT COLLATE "C" PRIMARY KEY,
    holder     TEXT COLLATE "C" NOT NULL,
    expires_at TEXT COLLATE "C" NOT NULL
);
