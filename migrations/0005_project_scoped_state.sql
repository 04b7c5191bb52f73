-- Plugin state and conversations belong to (connection, project).
--
-- A global connection serves every project, so data keyed by the connection
-- alone was shared between projects: state a call for one project wrote was
-- read by a call for another, and any caller could continue a conversation
-- by its id. The project is now part of the key. NULL is the scope of calls
-- made without a project: its own, distinct from every project's (the
-- empty-named one included, which is why NULL and not '' marks it).
--
-- Existing rows did not record their project, so none can be attributed to
-- one: they all become the no-project scope. No project's call sees them;
-- plugins rebuild what they cached (a session, a discovered id) per
-- project, and the operator still lists, reads and deletes the old
-- conversations (and continues them without a project).

-- plugin_state's primary key was (connection_id, key): the table is rebuilt.
CREATE TABLE plugin_state_scoped (
    connection_id TEXT NOT NULL REFERENCES connections (id) ON DELETE CASCADE,
    project       TEXT,                     -- NULL: calls without a project
    key           TEXT NOT NULL,
    value         TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
INSERT INTO plugin_state_scoped (connection_id, project, key, value, updated_at)
    SELECT connection_id, NULL, key, value, updated_at FROM plugin_state;
DROP TABLE plugin_state;
ALTER TABLE plugin_state_scoped RENAME TO plugin_state;
-- One value per key and scope. A UNIQUE index treats NULLs as distinct, so
-- the first index keeps project keys unique (and serves every lookup, `IS`
-- included) and the partial one keeps the no-project scope's unique.
CREATE UNIQUE INDEX plugin_state_scope_key ON plugin_state (connection_id, project, key);
CREATE UNIQUE INDEX plugin_state_no_project_key ON plugin_state (connection_id, key)
    WHERE project IS NULL;

-- The project a conversation was started for; NULL: without a project.
ALTER TABLE conversations ADD COLUMN project TEXT;
DROP INDEX conversations_by_connection;
CREATE INDEX conversations_by_scope ON conversations (connection_id, project, updated_at);
