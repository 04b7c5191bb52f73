-- Operator overrides of a plugin's OAuth endpoints (issue 16): another
-- identity provider than the one the manifest names (Azure DevOps Server,
-- Confluence Data Center's own OAuth 2.0 provider, a local test provider).
--
-- An organisation app may carry them for every connection of its plugin; a
-- connection may carry its own, which win. Each column replaces the
-- manifest's value of the same name when set and leaves it when NULL. The
-- values were checked when written (http(s), no user info, query or
-- fragment; https unless loopback or an origin the operator allows in clear
-- text) and are checked again where they are used.
ALTER TABLE oauth_apps ADD COLUMN authorize_url TEXT;
ALTER TABLE oauth_apps ADD COLUMN token_url TEXT;
ALTER TABLE oauth_apps ADD COLUMN issuer TEXT;

CREATE TABLE connection_oauth_endpoints (
    connection_id TEXT PRIMARY KEY REFERENCES connections (id) ON DELETE CASCADE,
    authorize_url TEXT,
    token_url     TEXT,
    issuer        TEXT,
    updated_at    TEXT NOT NULL
);
