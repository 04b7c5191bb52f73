-- A counter bumped by every change to what a plugin call reads on its way
-- out: connections and their projects, installed plugins, sealed secrets and
-- key versions. Readers cache those records in memory next to the counter
-- they were read at, and one read of this row tells them whether any
-- process (a CLI next to a running server included) changed anything since.
CREATE TABLE config_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT INTO config_version (id, n) VALUES (1, 0);

CREATE TRIGGER connections_ins AFTER INSERT ON connections
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER connections_upd AFTER UPDATE ON connections
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER connections_del AFTER DELETE ON connections
    BEGIN UPDATE config_version SET n = n + 1; END;

CREATE TRIGGER connection_projects_ins AFTER INSERT ON connection_projects
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER connection_projects_upd AFTER UPDATE ON connection_projects
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER connection_projects_del AFTER DELETE ON connection_projects
    BEGIN UPDATE config_version SET n = n + 1; END;

CREATE TRIGGER plugins_ins AFTER INSERT ON plugins
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER plugins_upd AFTER UPDATE ON plugins
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER plugins_del AFTER DELETE ON plugins
    BEGIN UPDATE config_version SET n = n + 1; END;

CREATE TRIGGER secrets_ins AFTER INSERT ON secrets
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER secrets_upd AFTER UPDATE ON secrets
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER secrets_del AFTER DELETE ON secrets
    BEGIN UPDATE config_version SET n = n + 1; END;

CREATE TRIGGER key_versions_ins AFTER INSERT ON key_versions
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER key_versions_upd AFTER UPDATE ON key_versions
    BEGIN UPDATE config_version SET n = n + 1; END;
CREATE TRIGGER key_versions_del AFTER DELETE ON key_versions
    BEGIN UPDATE config_version SET n = n + 1; END;
