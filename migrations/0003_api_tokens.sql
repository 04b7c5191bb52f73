-- Bearer tokens of the management API. Only the SHA-256 of a token is kept:
-- the token itself is shown once, when it is created.
CREATE TABLE api_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    token_hash  TEXT NOT NULL UNIQUE,
    role        TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'user')),
    -- NULL: every project; otherwise the one project the token may act in.
    project     TEXT,
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
