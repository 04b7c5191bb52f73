-- What several servers on one database need (PostgreSQL has the same
-- tables in its 0001).
--
-- The pinned bytes of every installed plugin file, by SHA-256, so a server
-- whose data directory lacks a file (another server installed it, or the
-- file was removed) restores it from the database, checked against the
-- pinned hash, instead of failing.
CREATE TABLE plugin_files (
    sha256 TEXT PRIMARY KEY,
    bytes  BLOB NOT NULL
);

-- Leases: one holder at a time for work that must not run twice at once
-- (an OAuth refresh, a connection's sync), across processes and servers.
-- A lease ends when its holder releases it or its time runs out (the
-- holder died).
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);
