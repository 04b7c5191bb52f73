-- Signed plugins (issue 18): the operator's trust policy and who signed
-- each installed plugin.
--
-- A trusted key is a publisher's OpenSSH public key under a name the
-- operator picks, trusted for every plugin (plugin_id NULL) or for one
-- plugin id. Signatures are matched by the key's SHA-256 fingerprint
-- (`SHA256:...`, as `ssh-keygen -l` prints it); a key is trusted at most
-- once per scope.
CREATE TABLE trusted_keys (
    name        TEXT PRIMARY KEY,
    public_key  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    plugin_id   TEXT,                       -- NULL: every plugin
    added_at    TEXT NOT NULL
);
CREATE UNIQUE INDEX trusted_keys_scope ON trusted_keys (fingerprint, COALESCE(plugin_id, ''));

-- The one policy row. require_signature is off by default, so existing
-- installs and unsigned plugins keep working until the operator turns it on.
CREATE TABLE trust_policy (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    require_signature INTEGER NOT NULL CHECK (require_signature IN (0, 1)),
    updated_at        TEXT
);
INSERT INTO trust_policy (id, require_signature, updated_at) VALUES (1, 0, NULL);

-- The fingerprint of the key that signed the installed file; NULL when it
-- was unsigned (every plugin installed before this migration).
ALTER TABLE plugins ADD COLUMN signer TEXT;
