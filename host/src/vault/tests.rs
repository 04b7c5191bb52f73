use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretString};
use tempfile::TempDir;

use super::key_source::KEY_FILE;
use super::*;
use crate::store::Backend;
use crate::store::sql::Params;
use crate::store::testing::TestStore;
use crate::store::{DB_FILE, Store};

crate::store::testing::on_both_backends!(
    roundtrip_connection_secret,
    roundtrip_oauth_app_secret,
    roundtrip_blob_bound_to_id_and_field,
    flipped_bits_fail_to_decrypt,
    ciphertext_copied_to_another_row_or_field_fails,
    wrong_master_key_is_refused_before_anything_is_written,
    passphrase_vault_opens_with_the_same_passphrase_only,
    env_key_source,
    key_file_is_created_once_private_and_described,
    truncated_key_file_is_an_error_and_never_replaced,
    missing_key_file_after_keys_exist_is_an_error,
    rotation_reencrypts_everything_and_restored_old_ciphertext_is_stale,
    rotation_drops_unverifiable_oauth_states,
    retire_refuses_active_and_used_versions,
    concurrent_reads_during_rotation_never_fail,
    a_second_vault_on_the_same_database_follows_rotation,
    a_vault_on_another_store_follows_a_rotation_without_being_reopened,
    an_older_row_restored_within_one_key_version_is_refused,
    a_cached_row_is_never_served_past_a_newer_write,
    a_deleted_secret_put_back_is_refused,
    a_secret_deleted_by_a_cascade_is_forgotten_at_the_next_write,
    rotation_refuses_a_row_restored_within_the_version,
    a_whole_vault_snapshot_is_caught_only_by_a_running_process,
    an_altered_or_removed_ledger_refuses_every_secret_until_re_entered,
    a_vault_from_before_the_ledger_adopts_its_secrets_once,
    readers_never_fail_while_another_process_rewrites_secrets,
    debug_output_never_contains_key_material,
);

// ----- helpers ---------------------------------------------------------------

fn no_env(_: &str) -> Option<OsString> {
    None
}

/// A SQLite store, for the tests about its files.
fn fixture() -> (TempDir, Arc<Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    (dir, store)
}

fn key_file(dir: &TempDir) -> KeySource {
    KeySource::File(dir.path().join(KEY_FILE))
}

fn open_vault(store: &Arc<Store>, source: &KeySource) -> Vault {
    Vault::open_with(Arc::clone(store), source, &no_env).unwrap()
}

fn try_open(store: &Arc<Store>, source: &KeySource) -> Result<Vault, VaultError> {
    Vault::open_with(Arc::clone(store), source, &no_env)
}

fn exec(store: &Store, sql: &str, params: Params<'_>) {
    store
        .write(|tx| {
            tx.execute(sql, params)?;
            Ok(())
        })
        .unwrap();
}

fn count(store: &Store, sql: &str) -> i64 {
    store
        .read(|c| c.query_row(sql, params![], |r| r.get(0)))
        .unwrap()
}

fn add_connection(store: &Store, id: &str) {
    exec(
        store,
        "INSERT INTO plugins
             (id, version, sha256, manifest, approved_grant, installed_at, updated_at)
         VALUES ('p', '1', 'x', '{}', '[]', 't', 't')
         ON CONFLICT (id) DO NOTHING",
        params![],
    );
    exec(
        store,
        "INSERT INTO connections
             (id, name, plugin_id, settings, auth_kind, is_global, status, created_at, updated_at)
         VALUES (?1, ?1, 'p', '{}', 'bearer', 1, 'active', 't', 't')",
        params![id],
    );
}

fn add_oauth_app(store: &Store, id: &str) {
    exec(
        store,
        "INSERT INTO oauth_apps (id, plugin_id, client_id, created_at, updated_at)
         VALUES (?1, ?1, 'client', 't', 't')",
        params![id],
    );
}

fn conn(id: &str) -> SecretOwner {
    SecretOwner::Connection(id.to_string())
}

fn seal(vault: &Vault, owner: &SecretOwner, field: &str, value: &str) {
    write_vault(&vault.store, |tx| {
        vault.seal_secret(tx, owner, field, &SecretString::from(value))
    })
    .unwrap();
}

fn open(vault: &Vault, owner: &SecretOwner, field: &str) -> Result<Option<String>, VaultError> {
    vault
        .open_secret(owner, field)
        .map(|s| s.map(|s| s.expose_secret().to_string()))
}

/// `(key_version, ciphertext)` of a secret row.
fn secret_row(store: &Store, owner_col: &str, owner: &str, field: &str) -> (u32, Vec<u8>) {
    store
        .read(|c| {
            c.query_row(
                &format!(
                    "SELECT key_version, ciphertext FROM secrets WHERE {owner_col} = ?1 AND field = ?2"
                ),
                params![owner, field],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap()
}

fn set_ciphertext(store: &Store, connection: &str, field: &str, blob: &[u8]) {
    exec(
        store,
        "UPDATE secrets SET ciphertext = ?1 WHERE connection_id = ?2 AND field = ?3",
        params![blob, connection, field],
    );
}

fn add_oauth_state(
    store: &Store,
    vault: &Vault,
    state_hash: &str,
    connection: &str,
    verifier: &[u8],
) {
    let (version, blob) = vault
        .seal_blob(state_hash, PKCE_VERIFIER_FIELD, verifier)
        .unwrap();
    exec(
        store,
        "INSERT INTO oauth_states
             (state_hash, connection_id, key_version, verifier, redirect_uri, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, 'http://localhost/cb', 't', 't')",
        params![state_hash, connection, version, blob],
    );
}

fn oauth_state(store: &Store, state_hash: &str) -> (u32, Vec<u8>) {
    store
        .read(|c| {
            c.query_row(
                "SELECT key_version, verifier FROM oauth_states WHERE state_hash = ?1",
                params![state_hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
        })
        .unwrap()
}

/// The database and WAL files' bytes.
fn db_bytes(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let db = std::fs::read(dir.join(DB_FILE)).unwrap();
    let wal = std::fs::read(dir.join(format!("{DB_FILE}-wal"))).unwrap_or_default();
    (db, wal)
}

/// The database and WAL files' bytes.
type FileBytes = (Vec<u8>, Vec<u8>);

/// Everything a refused open must leave as it was: every row of the
/// vault's tables and, on SQLite, the database and WAL files' bytes.
fn db_state(t: &TestStore) -> (Vec<Vec<Row>>, Option<FileBytes>) {
    let rows = [
        "SELECT name, value FROM vault_meta ORDER BY name",
        "SELECT version, wrapped_key, created_at, active FROM key_versions ORDER BY version",
        "SELECT id, key_version, ciphertext, updated_at FROM secrets ORDER BY id",
    ]
    .iter()
    .map(|sql| t.read(|c| c.query(sql, params![])).unwrap())
    .collect();
    let files = t.sqlite_path().map(|_| db_bytes(t.dir()));
    (rows, files)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ----- roundtrips ----------------------------------------------------------

fn roundtrip_connection_secret(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    let owner = conn("c1");

    assert_eq!(open(&vault, &owner, "token").unwrap(), None);
    seal(&vault, &owner, "token", "tok-1");
    seal(&vault, &owner, "password", "pw ünïcode");
    assert_eq!(
        open(&vault, &owner, "token").unwrap().as_deref(),
        Some("tok-1")
    );
    assert_eq!(
        open(&vault, &owner, "password").unwrap().as_deref(),
        Some("pw ünïcode")
    );

    // Replacing keeps one row per field, with a fresh id.
    let id_before: String = store
        .read(|c| {
            c.query_row(
                "SELECT id FROM secrets WHERE field = 'token'",
                params![],
                |r| r.get(0),
            )
        })
        .unwrap();
    seal(&vault, &owner, "token", "tok-2");
    assert_eq!(
        open(&vault, &owner, "token").unwrap().as_deref(),
        Some("tok-2")
    );
    assert_eq!(count(store, "SELECT COUNT(*) FROM secrets"), 2);
    let id_after: String = store
        .read(|c| {
            c.query_row(
                "SELECT id FROM secrets WHERE field = 'token'",
                params![],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_ne!(id_before, id_after);

    // Inside a caller's transaction.
    let inside = write_vault(store, |tx| {
        vault.seal_secret(tx, &owner, "token", &SecretString::from("tok-3"))?;
        let seen = vault.open_secret_in(tx, &owner, "token")?;
        Ok(seen.map(|s| s.expose_secret().to_string()))
    })
    .unwrap();
    assert_eq!(inside.as_deref(), Some("tok-3"));

    // Delete one field, then all.
    assert!(write_vault(store, |tx| vault.delete_secret(tx, &owner, "password")).unwrap());
    assert!(!write_vault(store, |tx| vault.delete_secret(tx, &owner, "password")).unwrap());
    seal(&vault, &owner, "extra", "x");
    assert_eq!(
        write_vault(store, |tx| vault.delete_secrets(tx, &owner)).unwrap(),
        2
    );
    assert_eq!(open(&vault, &owner, "token").unwrap(), None);
    assert_eq!(count(store, "SELECT COUNT(*) FROM secrets"), 0);

    // Reopening the vault reads what was written.
    seal(&vault, &owner, "token", "persisted");
    drop(vault);
    let vault = open_vault(store, &key_file(dir));
    assert_eq!(
        open(&vault, &owner, "token").unwrap().as_deref(),
        Some("persisted")
    );
}

fn roundtrip_oauth_app_secret(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_oauth_app(store, "app1");
    add_connection(store, "app1"); // same id, other owner kind
    let app = SecretOwner::OAuthApp("app1".to_string());
    seal(&vault, &app, "client-secret", "cs-app");
    seal(&vault, &conn("app1"), "client-secret", "cs-conn");
    assert_eq!(
        open(&vault, &app, "client-secret").unwrap().as_deref(),
        Some("cs-app")
    );
    assert_eq!(
        open(&vault, &conn("app1"), "client-secret")
            .unwrap()
            .as_deref(),
        Some("cs-conn")
    );
    assert_eq!(
        write_vault(store, |tx| vault.delete_secrets(tx, &app)).unwrap(),
        1
    );
    assert_eq!(open(&vault, &app, "client-secret").unwrap(), None);
    assert!(
        open(&vault, &conn("app1"), "client-secret")
            .unwrap()
            .is_some()
    );

    // Deleting the app cascades to its secrets.
    seal(&vault, &app, "client-secret", "again");
    exec(store, "DELETE FROM oauth_apps WHERE id = 'app1'", params![]);
    assert_eq!(open(&vault, &app, "client-secret").unwrap(), None);
}

fn roundtrip_blob_bound_to_id_and_field(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    let (version, blob) = vault
        .seal_blob("hash-1", PKCE_VERIFIER_FIELD, b"verifier-bytes")
        .unwrap();
    assert_eq!(version, 1);
    assert_eq!(
        &vault
            .open_blob("hash-1", PKCE_VERIFIER_FIELD, version, &blob)
            .unwrap()[..],
        b"verifier-bytes"
    );
    let in_tx = write_vault(store, |tx| {
        vault.seal_blob_in(tx, "hash-2", PKCE_VERIFIER_FIELD, b"v2")
    })
    .unwrap();
    assert_eq!(
        &vault
            .open_blob("hash-2", PKCE_VERIFIER_FIELD, in_tx.0, &in_tx.1)
            .unwrap()[..],
        b"v2"
    );
    for (id, field) in [("hash-2", PKCE_VERIFIER_FIELD), ("hash-1", "other")] {
        match vault.open_blob(id, field, version, &blob) {
            Err(VaultError::Decrypt { what }) => {
                assert!(what.contains(id) && what.contains(field), "{what}")
            }
            other => panic!("expected Decrypt, got {other:?}"),
        }
    }
    let in_tx = write_vault(store, |tx| {
        vault.open_blob_in(tx, "hash-1", PKCE_VERIFIER_FIELD, version, &blob)
    })
    .unwrap();
    assert_eq!(&in_tx[..], b"verifier-bytes");
    // The row's key_version column must match the blob.
    assert!(matches!(
        vault.open_blob("hash-1", PKCE_VERIFIER_FIELD, 2, &blob),
        Err(VaultError::StaleCiphertext { found: 1, .. })
    ));
}

// ----- tampering -------------------------------------------------------------

fn flipped_bits_fail_to_decrypt(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    let owner = conn("c1");
    seal(&vault, &owner, "token", "super-secret-value");
    let (_, original) = secret_row(store, "connection_id", "c1", "token");
    let len = original.len();
    // magic, nonce (bytes 7..19), ciphertext (19..len-16), tag (last 16).
    for (name, index) in [
        ("magic", 0),
        ("nonce", 7),
        ("nonce", 18),
        ("ciphertext", 19),
        ("ciphertext", len - 17),
        ("tag", len - 16),
        ("tag", len - 1),
    ] {
        let mut tampered = original.clone();
        tampered[index] ^= 0x01;
        set_ciphertext(store, "c1", "token", &tampered);
        match open(&vault, &owner, "token") {
            Err(e @ VaultError::Decrypt { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("connection c1") && msg.contains("'token'"),
                    "{msg}"
                );
                assert!(!msg.contains("super-secret"), "{msg}");
                assert!(!format!("{e:?}").contains("super-secret"));
            }
            other => panic!("flipped {name} byte {index}: expected Decrypt, got {other:?}"),
        }
    }
    // A truncated blob is a decrypt failure too.
    set_ciphertext(store, "c1", "token", &original[..20]);
    assert!(matches!(
        open(&vault, &owner, "token"),
        Err(VaultError::Decrypt { .. })
    ));
    // Editing the version in the header makes it disagree with the row.
    let mut tampered = original.clone();
    tampered[6] ^= 0x01;
    set_ciphertext(store, "c1", "token", &tampered);
    assert!(matches!(
        open(&vault, &owner, "token"),
        Err(VaultError::StaleCiphertext { .. })
    ));
    set_ciphertext(store, "c1", "token", &original);
    assert_eq!(
        open(&vault, &owner, "token").unwrap().as_deref(),
        Some("super-secret-value")
    );
}

fn ciphertext_copied_to_another_row_or_field_fails(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    add_connection(store, "c2");
    seal(&vault, &conn("c1"), "token", "c1-token");
    seal(&vault, &conn("c1"), "password", "c1-password");
    seal(&vault, &conn("c2"), "token", "c2-token");

    // Another row: c1's token into c2's token.
    exec(
        store,
        "UPDATE secrets SET ciphertext =
             (SELECT ciphertext FROM secrets WHERE connection_id = 'c1' AND field = 'token')
         WHERE connection_id = 'c2' AND field = 'token'",
        params![],
    );
    match open(&vault, &conn("c2"), "token") {
        Err(VaultError::Decrypt { what }) => assert_eq!(what, "secret 'token' of connection c2"),
        other => panic!("expected Decrypt, got {other:?}"),
    }

    // Another field of the same connection.
    exec(
        store,
        "UPDATE secrets SET ciphertext =
             (SELECT ciphertext FROM secrets WHERE connection_id = 'c1' AND field = 'token')
         WHERE connection_id = 'c1' AND field = 'password'",
        params![],
    );
    assert!(matches!(
        open(&vault, &conn("c1"), "password"),
        Err(VaultError::Decrypt { .. })
    ));

    // The whole row moved to another owner (same id, same ciphertext).
    exec(
        store,
        "DELETE FROM secrets WHERE connection_id = 'c2'",
        params![],
    );
    exec(
        store,
        "UPDATE secrets SET connection_id = 'c2' WHERE connection_id = 'c1' AND field = 'token'",
        params![],
    );
    assert!(matches!(
        open(&vault, &conn("c2"), "token"),
        Err(VaultError::Decrypt { .. })
    ));

    // A secret's ciphertext as an oauth_states verifier.
    add_connection(store, "c3");
    seal(&vault, &conn("c3"), "token", "c3-token");
    let (version, blob) = secret_row(store, "connection_id", "c3", "token");
    assert!(matches!(
        vault.open_blob("h", PKCE_VERIFIER_FIELD, version, &blob),
        Err(VaultError::Decrypt { .. })
    ));
    // An older ciphertext of the same secret (same version, old row id).
    seal(&vault, &conn("c3"), "token", "c3-token-new");
    set_ciphertext(store, "c3", "token", &blob);
    assert!(matches!(
        open(&vault, &conn("c3"), "token"),
        Err(VaultError::Decrypt { .. })
    ));
}

// ----- master key ---------------------------------------------------------

fn wrong_master_key_is_refused_before_anything_is_written(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let source = key_file(dir);
    let vault = open_vault(store, &source);
    add_connection(store, "c1");
    seal(&vault, &conn("c1"), "token", "value");
    drop(vault);

    let rows = |store: &Store| {
        (
            count(store, "SELECT COUNT(*) FROM vault_meta"),
            count(store, "SELECT COUNT(*) FROM key_versions"),
            count(store, "SELECT COUNT(*) FROM secrets"),
        )
    };
    let rows_before = rows(store);
    let bytes_before = db_state(t);

    // Another key file.
    let other_dir = tempfile::tempdir().unwrap();
    let other_key = other_dir.path().join("other.key");
    std::fs::write(&other_key, STANDARD.encode([9u8; 32])).unwrap();
    let err = try_open(store, &KeySource::File(other_key.clone())).unwrap_err();
    assert!(matches!(err, VaultError::WrongMasterKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("wrong master key") && msg.contains("other.key"),
        "{msg}"
    );
    assert!(!msg.contains(&STANDARD.encode([9u8; 32])));

    // Another key in the environment.
    let env_key = STANDARD.encode([7u8; 32]);
    let env = |name: &str| (name == MASTER_KEY_VAR).then(|| OsString::from(&env_key));
    let err = Vault::open_with(Arc::clone(store), &KeySource::Env, &env).unwrap_err();
    assert!(matches!(err, VaultError::WrongMasterKey { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("environment variable AIRLOCK_MASTER_KEY")
    );
    assert!(!err.to_string().contains(&env_key));

    // A passphrase, for a vault created with a key.
    let err = try_open(store, &KeySource::Passphrase(SecretString::from("hunter2"))).unwrap_err();
    assert!(matches!(err, VaultError::WrongMasterKey { .. }), "{err:?}");
    assert!(err.to_string().contains("not a passphrase"), "{err}");
    assert!(!err.to_string().contains("hunter2"));

    assert_eq!(rows(store), rows_before);
    assert_eq!(db_state(t), bytes_before, "the database changed");

    // The right key still opens it.
    let vault = open_vault(store, &source);
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("value")
    );
}

fn passphrase_vault_opens_with_the_same_passphrase_only(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let source = KeySource::Passphrase(SecretString::from("correct horse battery staple"));
    let vault = open_vault(store, &source);
    assert_eq!(vault.describe_source(), "passphrase (Argon2id)");
    add_connection(store, "c1");
    seal(&vault, &conn("c1"), "token", "value");
    drop(vault);
    assert!(
        !dir.path().join(KEY_FILE).exists(),
        "no key file for a passphrase"
    );

    let salt: Vec<u8> = store
        .read(|c| {
            c.query_row(
                "SELECT value FROM vault_meta WHERE name = 'argon2-salt'",
                params![],
                |r| r.get(0),
            )
        })
        .unwrap();
    assert_eq!(salt.len(), 16);

    let bytes_before = db_state(t);
    let err = try_open(store, &KeySource::Passphrase(SecretString::from("wrong"))).unwrap_err();
    assert!(matches!(err, VaultError::WrongMasterKey { .. }), "{err:?}");
    let err = try_open(store, &key_file(dir)).unwrap_err();
    assert!(
        err.to_string().contains("created with a passphrase"),
        "{err}"
    );
    assert!(
        !dir.path().join(KEY_FILE).exists(),
        "key file created for a passphrase vault"
    );
    assert_eq!(db_state(t), bytes_before);

    let vault = open_vault(store, &source);
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("value")
    );
}

fn env_key_source(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let key = STANDARD.encode(rand::random::<[u8; 32]>());
    let env = |name: &str| (name == MASTER_KEY_VAR).then(|| OsString::from(format!("{key}\n")));
    let source = KeySource::from_lookup(dir.path(), &env).unwrap();
    assert!(matches!(source, KeySource::Env));
    let vault = Vault::open_with(Arc::clone(store), &source, &env).unwrap();
    assert_eq!(
        vault.describe_source(),
        "environment variable AIRLOCK_MASTER_KEY"
    );
    assert!(!dir.path().join(KEY_FILE).exists());
    add_connection(store, "c1");
    seal(&vault, &conn("c1"), "token", "value");
    drop(vault);
    // The same key in a key file opens it too.
    let file = dir.path().join("moved.key");
    std::fs::write(&file, &key).unwrap();
    let vault = open_vault(store, &KeySource::File(file));
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("value")
    );
}

#[test]
fn key_source_from_env_precedence_and_errors() {
    let dir = Path::new("/data");
    let key = STANDARD.encode([3u8; 32]);
    let both = |name: &str| match name {
        MASTER_KEY_VAR => Some(OsString::from(&key)),
        MASTER_PASSPHRASE_VAR => Some(OsString::from("pass")),
        _ => None,
    };
    assert!(matches!(
        KeySource::from_lookup(dir, &both).unwrap(),
        KeySource::Env
    ));
    let pass = |name: &str| (name == MASTER_PASSPHRASE_VAR).then(|| OsString::from("pass"));
    let source = KeySource::from_lookup(dir, &pass).unwrap();
    assert!(matches!(&source, KeySource::Passphrase(p) if p.expose_secret() == "pass"));
    assert_eq!(source.describe(), "passphrase (Argon2id)");
    let source = KeySource::from_lookup(dir, &no_env).unwrap();
    assert!(matches!(&source, KeySource::File(p) if p == &PathBuf::from("/data/master.key")));
    assert_eq!(source.describe(), "key file /data/master.key");
    assert_eq!(
        KeySource::Env.describe(),
        "environment variable AIRLOCK_MASTER_KEY"
    );

    // A set but unusable variable is an error, never a fall-back.
    for (value, problem) in [
        ("", "is empty"),
        ("not base64 at all!!", "is not valid base64"),
        ("c2hvcnQta2V5", "decodes to 9 bytes"),
    ] {
        let env = |name: &str| (name == MASTER_KEY_VAR).then(|| OsString::from(value));
        let err = KeySource::from_lookup(dir, &env).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, VaultError::BadEnvKey { .. }), "{err:?}");
        assert!(msg.contains(problem), "{msg}");
        assert!(value.is_empty() || !msg.contains(value), "{msg}");
    }
    let empty = |name: &str| (name == MASTER_PASSPHRASE_VAR).then(OsString::new);
    assert!(matches!(
        KeySource::from_lookup(dir, &empty),
        Err(VaultError::BadPassphrase { .. })
    ));
}

fn key_file_is_created_once_private_and_described(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let path = dir.path().join(KEY_FILE);
    let vault = open_vault(store, &key_file(dir));
    // The warning is about a key beside the database file: a PostgreSQL
    // database is elsewhere.
    let expected = match store.backend() {
        Backend::Sqlite => format!(
            "key file {} (created now: it sits next to the data it protects; move the key \
             elsewhere or use AIRLOCK_MASTER_KEY for real protection)",
            path.display()
        ),
        Backend::Postgres => format!("key file {} (created now)", path.display()),
    };
    assert_eq!(vault.describe_source(), expected);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), 32);
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".master.key"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
    drop(vault);

    let vault = open_vault(store, &key_file(dir));
    assert!(!vault.describe_source().contains("created now"));
    assert_eq!(
        vault.describe_source().contains("sits next to the data"),
        store.backend() == Backend::Sqlite
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);

    // A raw 32-byte key file elsewhere works as well.
    let t2 = TestStore::new(t.backend());
    let (dir2, store2) = (&t2.dir, &t2.store);
    let elsewhere = tempfile::tempdir().unwrap();
    let raw = elsewhere.path().join("raw.key");
    std::fs::write(&raw, [5u8; 32]).unwrap();
    let vault = open_vault(store2, &KeySource::File(raw.clone()));
    assert_eq!(
        vault.describe_source(),
        format!("key file {}", raw.display())
    );
    assert_eq!(std::fs::read(&raw).unwrap(), [5u8; 32]);
    assert!(!dir2.path().join(KEY_FILE).exists());
}

fn truncated_key_file_is_an_error_and_never_replaced(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let path = dir.path().join(KEY_FILE);
    drop(open_vault(store, &key_file(dir)));
    let full = std::fs::read(&path).unwrap();

    for truncated in [&full[..20], &full[..0], &full[..31]] {
        std::fs::write(&path, truncated).unwrap();
        let err = try_open(store, &key_file(dir)).unwrap_err();
        assert!(matches!(err, VaultError::BadKeyFile { .. }), "{err:?}");
        assert!(err.to_string().contains("never replaced"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), truncated);
    }
    // Wrong length but valid base64.
    std::fs::write(&path, STANDARD.encode([1u8; 16])).unwrap();
    let err = try_open(store, &key_file(dir)).unwrap_err();
    assert!(err.to_string().contains("decodes to 16 bytes"), "{err}");

    // Even on a brand-new database an existing bad key file is not replaced.
    let t2 = TestStore::new(t.backend());
    let (dir2, store2) = (&t2.dir, &t2.store);
    let path2 = dir2.path().join(KEY_FILE);
    std::fs::write(&path2, &full[..10]).unwrap();
    assert!(matches!(
        try_open(store2, &key_file(dir2)),
        Err(VaultError::BadKeyFile { .. })
    ));
    assert_eq!(std::fs::read(&path2).unwrap(), &full[..10]);
    assert_eq!(count(store2, "SELECT COUNT(*) FROM key_versions"), 0);
    assert_eq!(count(store2, "SELECT COUNT(*) FROM vault_meta"), 0);

    // Restoring the file restores access.
    std::fs::write(&path, &full).unwrap();
    open_vault(store, &key_file(dir));
}

fn missing_key_file_after_keys_exist_is_an_error(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let path = dir.path().join(KEY_FILE);
    drop(open_vault(store, &key_file(dir)));
    let saved = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let bytes_before = db_state(t);

    let err = try_open(store, &key_file(dir)).unwrap_err();
    assert!(matches!(err, VaultError::MissingKeyFile { .. }), "{err:?}");
    assert!(
        err.to_string().contains("restore the original key file"),
        "{err}"
    );
    assert!(!path.exists(), "a new key file was created");
    assert_eq!(db_state(t), bytes_before);

    std::fs::write(&path, saved).unwrap();
    open_vault(store, &key_file(dir));
}

// ----- rotation ------------------------------------------------------------

fn rotation_reencrypts_everything_and_restored_old_ciphertext_is_stale(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    add_connection(store, "c2");
    add_oauth_app(store, "app");
    let app = SecretOwner::OAuthApp("app".to_string());
    seal(&vault, &conn("c1"), "token", "t1");
    seal(&vault, &conn("c1"), "password", "p1");
    seal(&vault, &conn("c2"), "token", "t2");
    seal(&vault, &app, "client-secret", "cs");
    add_oauth_state(store, &vault, "state-a", "c1", b"verifier-a");

    // A "backup" taken before the rotation.
    let backup = secret_row(store, "connection_id", "c1", "token");
    let backup_state = oauth_state(store, "state-a");
    assert_eq!(backup.0, 1);

    assert_eq!(vault.rotate().unwrap(), 2);
    let versions = vault.versions().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(
        (
            versions[0].version,
            versions[0].active,
            versions[0].secrets,
            versions[0].oauth_states
        ),
        (1, false, 0, 0)
    );
    assert_eq!(
        (
            versions[1].version,
            versions[1].active,
            versions[1].secrets,
            versions[1].oauth_states
        ),
        (2, true, 4, 1)
    );
    assert_eq!(
        count(store, "SELECT COUNT(*) FROM secrets WHERE key_version <> 2"),
        0
    );
    let (state_version, state_blob) = oauth_state(store, "state-a");
    assert_eq!(state_version, 2);
    assert_eq!(
        &vault
            .open_blob("state-a", PKCE_VERIFIER_FIELD, state_version, &state_blob)
            .unwrap()[..],
        b"verifier-a"
    );
    for (owner, field, value) in [
        (conn("c1"), "token", "t1"),
        (conn("c1"), "password", "p1"),
        (conn("c2"), "token", "t2"),
        (app.clone(), "client-secret", "cs"),
    ] {
        assert_eq!(open(&vault, &owner, field).unwrap().as_deref(), Some(value));
        // Embedded version in the ciphertext header too.
        let col = if matches!(owner, SecretOwner::Connection(_)) {
            "connection_id"
        } else {
            "oauth_app_id"
        };
        let (v, blob) = secret_row(store, col, owner.id(), field);
        assert_eq!(
            (v, crypto::header_version(MAGIC_SEALED, &blob)),
            (2, Some(2))
        );
    }
    // New writes go under the new version; a reopened vault reads everything.
    seal(&vault, &conn("c2"), "new", "n");
    assert_eq!(secret_row(store, "connection_id", "c2", "new").0, 2);
    drop(vault);
    let vault = open_vault(store, &key_file(dir));
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("t1")
    );

    // The old ciphertext restored with its old key_version.
    exec(
        store,
        "UPDATE secrets SET key_version = ?1, ciphertext = ?2
         WHERE connection_id = 'c1' AND field = 'token'",
        params![backup.0, backup.1],
    );
    match open(&vault, &conn("c1"), "token") {
        Err(
            e @ VaultError::StaleCiphertext {
                found: 1,
                active: 2,
                ..
            },
        ) => {
            assert!(e.to_string().contains("restored"), "{e}");
            assert!(e.to_string().contains("connection c1"), "{e}");
        }
        other => panic!("expected StaleCiphertext, got {other:?}"),
    }
    // ... or only the ciphertext.
    set_ciphertext(store, "c1", "token", &backup.1);
    exec(
        store,
        "UPDATE secrets SET key_version = 2 WHERE connection_id = 'c1' AND field = 'token'",
        params![],
    );
    assert!(matches!(
        open(&vault, &conn("c1"), "token"),
        Err(VaultError::StaleCiphertext {
            found: 1,
            active: 2,
            ..
        })
    ));
    // The oauth state likewise.
    assert!(matches!(
        vault.open_blob(
            "state-a",
            PKCE_VERIFIER_FIELD,
            backup_state.0,
            &backup_state.1
        ),
        Err(VaultError::StaleCiphertext {
            found: 1,
            active: 2,
            ..
        })
    ));
    assert!(matches!(
        vault.open_blob("state-a", PKCE_VERIFIER_FIELD, 2, &backup_state.1),
        Err(VaultError::StaleCiphertext { found: 1, .. })
    ));

    // A rotation with a stale secret present refuses rather than launder it,
    // and changes nothing.
    let before = vault.versions().unwrap();
    assert!(matches!(
        vault.rotate(),
        Err(VaultError::StaleCiphertext { .. })
    ));
    assert_eq!(vault.versions().unwrap(), before);
    assert_eq!(
        open(&vault, &conn("c2"), "token").unwrap().as_deref(),
        Some("t2")
    );
    // Re-entering the secret fixes it; rotation then proceeds.
    seal(&vault, &conn("c1"), "token", "t1-new");
    assert_eq!(vault.rotate().unwrap(), 3);
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("t1-new")
    );
}

fn rotation_drops_unverifiable_oauth_states(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    add_oauth_state(store, &vault, "good", "c1", b"g");
    add_oauth_state(store, &vault, "bad", "c1", b"b");
    let (_, good_blob) = oauth_state(store, "good");
    exec(
        store,
        "UPDATE oauth_states SET verifier = ?1 WHERE state_hash = 'bad'",
        params![good_blob],
    );
    vault.rotate().unwrap();
    assert_eq!(count(store, "SELECT COUNT(*) FROM oauth_states"), 1);
    let (v, blob) = oauth_state(store, "good");
    assert_eq!(
        &vault
            .open_blob("good", PKCE_VERIFIER_FIELD, v, &blob)
            .unwrap()[..],
        b"g"
    );
}

fn retire_refuses_active_and_used_versions(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    seal(&vault, &conn("c1"), "token", "t");
    let backup = secret_row(store, "connection_id", "c1", "token");

    assert!(matches!(
        vault.retire(1),
        Err(VaultError::RetireActive { version: 1 })
    ));
    assert!(matches!(
        vault.retire(9),
        Err(VaultError::NoSuchVersion { version: 9 })
    ));
    assert_eq!(vault.rotate().unwrap(), 2);
    assert!(matches!(
        vault.retire(2),
        Err(VaultError::RetireActive { version: 2 })
    ));

    // A row restored under version 1 keeps version 1 in use.
    exec(
        store,
        "UPDATE secrets SET key_version = ?1, ciphertext = ?2 WHERE connection_id = 'c1'",
        params![backup.0, backup.1],
    );
    match vault.retire(1) {
        Err(VaultError::VersionInUse {
            version: 1,
            secrets: 1,
            oauth_states: 0,
        }) => {}
        other => panic!("expected VersionInUse, got {other:?}"),
    }
    seal(&vault, &conn("c1"), "token", "t2");

    vault.retire(1).unwrap();
    let versions = vault.versions().unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(
        (versions[0].version, versions[0].active, versions[0].secrets),
        (2, true, 1)
    );
    assert!(!format!("{vault:?}").contains("1, 2"));
    assert!(matches!(
        vault.retire(1),
        Err(VaultError::NoSuchVersion { version: 1 })
    ));

    // The old backup now names a key that no longer exists (the foreign key
    // keeps it out of the key_version column, so restore only the blob).
    set_ciphertext(store, "c1", "token", &backup.1);
    assert!(matches!(
        open(&vault, &conn("c1"), "token"),
        Err(VaultError::StaleCiphertext {
            found: 1,
            active: 2,
            ..
        })
    ));
    seal(&vault, &conn("c1"), "token", "t3");
    drop(vault);
    let vault = open_vault(store, &key_file(dir));
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("t3")
    );
    assert_eq!(vault.rotate().unwrap(), 3);
}

fn concurrent_reads_during_rotation_never_fail(t: &TestStore) {
    const SECRETS: usize = 40;
    const THREADS: usize = 8;
    const READS_PER_THREAD: usize = 125; // 1,000 in all

    let (dir, store) = (&t.dir, &t.store);
    let vault = Arc::new(open_vault(store, &key_file(dir)));
    for i in 0..SECRETS {
        add_connection(store, &format!("c{i}"));
        seal(
            &vault,
            &conn(&format!("c{i}")),
            "token",
            &format!("value-{i}"),
        );
    }

    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let done = Arc::new(AtomicBool::new(false));
    let rotated = Arc::new(AtomicUsize::new(0));
    let rotator = {
        let (vault, barrier, done, rotated) = (
            Arc::clone(&vault),
            Arc::clone(&barrier),
            Arc::clone(&done),
            Arc::clone(&rotated),
        );
        std::thread::spawn(move || {
            barrier.wait();
            let mut rotations = 0;
            while rotations < 2 || (!done.load(Ordering::SeqCst) && rotations < 25) {
                vault.rotate().unwrap();
                rotations += 1;
                rotated.fetch_add(1, Ordering::SeqCst);
            }
            rotations
        })
    };
    let readers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (vault, barrier, rotated) = (
                Arc::clone(&vault),
                Arc::clone(&barrier),
                Arc::clone(&rotated),
            );
            std::thread::spawn(move || {
                barrier.wait();
                let rotated_before = rotated.load(Ordering::SeqCst);
                let mut failures = Vec::new();
                // The reads go on (for a while at most) until a rotation
                // has committed during them: on a loaded machine the
                // readers can otherwise be done before the rotator first
                // gets the connection.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let overlapped = || rotated.load(Ordering::SeqCst) > rotated_before;
                for j in (0..).take_while(|&j| {
                    j < READS_PER_THREAD || (!overlapped() && std::time::Instant::now() < deadline)
                }) {
                    let i = (t * READS_PER_THREAD + j) % SECRETS;
                    match open(&vault, &conn(&format!("c{i}")), "token") {
                        Ok(Some(v)) if v == format!("value-{i}") => {}
                        other => failures.push(format!("c{i}: {other:?}")),
                    }
                }
                (failures, rotated.load(Ordering::SeqCst) - rotated_before)
            })
        })
        .collect();
    let mut failures = Vec::new();
    let mut rotations_during_reads = 0;
    for reader in readers {
        let (f, seen) = reader.join().unwrap();
        failures.extend(f);
        rotations_during_reads += seen;
    }
    done.store(true, Ordering::SeqCst);
    let rotations = rotator.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:?}",
        failures.len()
    );
    assert!(
        rotations_during_reads > 0,
        "no rotation overlapped the reads"
    );

    let active = 1 + rotations as u32;
    let versions = vault.versions().unwrap();
    assert_eq!(versions.last().unwrap().version, active);
    assert!(versions.last().unwrap().active);
    assert_eq!(versions.last().unwrap().secrets, SECRETS);
    for i in 0..SECRETS {
        assert_eq!(
            open(&vault, &conn(&format!("c{i}")), "token").unwrap(),
            Some(format!("value-{i}"))
        );
    }
}

fn a_second_vault_on_the_same_database_follows_rotation(t: &TestStore) {
    // Another process (e.g. the CLI) rotating: this vault has not seen the
    // new key, and loads it on demand.
    let (dir, store) = (&t.dir, &t.store);
    let a = open_vault(store, &key_file(dir));
    let b = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    seal(&a, &conn("c1"), "token", "t");
    assert_eq!(b.rotate().unwrap(), 2);
    assert_eq!(
        open(&a, &conn("c1"), "token").unwrap().as_deref(),
        Some("t")
    );
    let (version, blob) = b.seal_blob("h", PKCE_VERIFIER_FIELD, b"v").unwrap();
    assert_eq!(version, 2);
    let opened = read_vault(store, |c| {
        a.open_blob_in(c, "h", PKCE_VERIFIER_FIELD, version, &blob)
    })
    .unwrap();
    assert_eq!(&opened[..], b"v");
    seal(&a, &conn("c1"), "token", "t2");
    assert_eq!(secret_row(store, "connection_id", "c1", "token").0, 2);
    assert_eq!(
        open(&b, &conn("c1"), "token").unwrap().as_deref(),
        Some("t2")
    );
}

/// Two servers: each its own `Store` on the same database. A rotation on
/// one is followed by the other's running vault, for opening and sealing.
fn a_vault_on_another_store_follows_a_rotation_without_being_reopened(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let other: Arc<Store> = Arc::new(t.reopen());
    let a = open_vault(store, &key_file(dir));
    let b = open_vault(&other, &key_file(dir));
    add_connection(store, "c1");
    seal(&a, &conn("c1"), "token", "t");
    assert_eq!(
        open(&b, &conn("c1"), "token").unwrap().as_deref(),
        Some("t")
    );
    assert_eq!(a.rotate().unwrap(), 2);
    assert!(!b.ring().keys.contains_key(&2));
    assert_eq!(
        open(&b, &conn("c1"), "token").unwrap().as_deref(),
        Some("t")
    );
    // Opened from the row re-read under version 2 (the counter moved), not
    // from b's cached copy under version 1: b unwrapped version 2 for it.
    assert!(b.ring().keys.contains_key(&2));
    seal(&b, &conn("c1"), "token", "t2");
    assert_eq!(secret_row(store, "connection_id", "c1", "token").0, 2);
    assert_eq!(
        open(&a, &conn("c1"), "token").unwrap().as_deref(),
        Some("t2")
    );
}

// ----- restores within one key version -------------------------------------

/// Every column of a secret row, as a backup of that row holds it.
#[derive(Debug, Clone)]
struct RowCopy {
    id: String,
    connection_id: Option<String>,
    oauth_app_id: Option<String>,
    field: String,
    key_version: u32,
    ciphertext: Vec<u8>,
    updated_at: String,
}

fn copy_row(store: &Store, owner: &SecretOwner, field: &str) -> RowCopy {
    store
        .read(|c| {
            c.query_row(
                &format!(
                    "SELECT id, connection_id, oauth_app_id, field, key_version, ciphertext,
                            updated_at
                     FROM secrets WHERE {} = ?1 AND field = ?2",
                    owner.column()
                ),
                params![owner.id(), field],
                |r| {
                    Ok(RowCopy {
                        id: r.get(0)?,
                        connection_id: r.get(1)?,
                        oauth_app_id: r.get(2)?,
                        field: r.get(3)?,
                        key_version: r.get(4)?,
                        ciphertext: r.get(5)?,
                        updated_at: r.get(6)?,
                    })
                },
            )
        })
        .unwrap()
}

/// Put `row` back with raw SQL, as restoring it from a backup would:
/// whatever row its owner's field has now goes.
fn put_back(store: &Store, row: &RowCopy) {
    exec(
        store,
        "DELETE FROM secrets
         WHERE (connection_id = ?1 OR oauth_app_id = ?2) AND field = ?3",
        params![row.connection_id, row.oauth_app_id, row.field],
    );
    exec(
        store,
        "INSERT INTO secrets
             (id, connection_id, oauth_app_id, field, key_version, ciphertext, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            row.id,
            row.connection_id,
            row.oauth_app_id,
            row.field,
            row.key_version,
            row.ciphertext,
            row.updated_at
        ],
    );
}

/// The ledger's two `vault_meta` rows.
fn ledger_meta(store: &Store) -> ledger::Stored {
    store.read(|c| ledger::read_stored(c)).unwrap()
}

fn set_ledger_meta(store: &Store, stored: &ledger::Stored) {
    for (name, value) in [
        (ledger::META_LEDGER, &stored.ledger),
        (ledger::META_LEDGER_TAG, &stored.tag),
    ] {
        exec(
            store,
            "DELETE FROM vault_meta WHERE name = ?1",
            params![name],
        );
        if let Some(value) = value {
            exec(
                store,
                "INSERT INTO vault_meta (name, value) VALUES (?1, ?2)",
                params![name, value],
            );
        }
    }
}

fn assert_restored(result: Result<Option<String>, VaultError>, deleted: bool, what: &str) {
    match result {
        Err(e @ VaultError::RestoredSecret { .. }) => {
            assert!(
                matches!(e, VaultError::RestoredSecret { deleted: d, .. } if d == deleted),
                "{e:?}"
            );
            let msg = e.to_string();
            assert!(msg.contains(what), "{msg}");
            assert!(msg.contains("re-enter the secret"), "{msg}");
            assert!(msg.contains("run its OAuth flow again"), "{msg}");
            let cause = if deleted { "deleted" } else { "older copy" };
            assert!(msg.contains(cause), "{msg}");
            for value in ["old-", "new-", "again-", "cs-", "value-"] {
                assert!(!msg.contains(value), "{msg}");
                assert!(!format!("{e:?}").contains(value), "{e:?}");
            }
        }
        other => panic!("{what}: expected RestoredSecret, got {other:?}"),
    }
}

/// One secret of every kind the host stores.
fn every_kind(store: &Store) -> Vec<(SecretOwner, &'static str)> {
    add_connection(store, "c1");
    add_connection(store, "c2");
    add_oauth_app(store, "app");
    let app = SecretOwner::OAuthApp("app".to_string());
    vec![
        (conn("c1"), "access-token"),
        (conn("c1"), "refresh-token"),
        (conn("c1"), "access-token-expires-at"),
        (conn("c1"), "access-token-refresh-at"),
        (conn("c2"), "password"),
        (conn("c2"), "api-key"),
        (conn("c2"), "token"),
        (conn("c2"), "client-secret"),
        (app, "client-secret"),
    ]
}

fn an_older_row_restored_within_one_key_version_is_refused(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    let secrets = every_kind(store);
    for (owner, field) in &secrets {
        seal(&vault, owner, field, &format!("old-{field}"));
    }
    let backups: Vec<RowCopy> = secrets.iter().map(|(o, f)| copy_row(store, o, f)).collect();
    for (owner, field) in &secrets {
        seal(&vault, owner, field, &format!("new-{field}"));
    }
    assert_eq!(vault.versions().unwrap().len(), 1, "no rotation in between");

    // Each one restored alone: it is refused, through the record cache, in
    // a transaction and by a vault opened afterwards (a restart, or the CLI
    // next to a server); every other secret still opens.
    for (i, ((owner, field), backup)) in secrets.iter().zip(&backups).enumerate() {
        let what = owner.describe(field);
        let current = copy_row(store, owner, field);
        put_back(store, backup);
        assert_restored(open(&vault, owner, field), false, &what);
        let in_tx = write_vault(store, |tx| {
            Ok(vault
                .open_secret_in(tx, owner, field)
                .map(|s| s.map(|s| s.expose_secret().to_string())))
        })
        .unwrap();
        assert_restored(in_tx, false, &what);
        let restarted = open_vault(store, &key_file(dir));
        assert_restored(open(&restarted, owner, field), false, &what);
        for (j, (o, f)) in secrets.iter().enumerate() {
            if j != i {
                assert_eq!(open(&vault, o, f).unwrap(), Some(format!("new-{f}")));
            }
        }
        // The current row put back as it was is the current row.
        put_back(store, &current);
        assert_eq!(
            open(&vault, owner, field).unwrap(),
            Some(format!("new-{field}"))
        );
    }

    // All of them at once (a backup of just these rows); re-entering each
    // one fixes it.
    for backup in &backups {
        put_back(store, backup);
    }
    for (owner, field) in &secrets {
        assert_restored(open(&vault, owner, field), false, &owner.describe(field));
    }
    for (owner, field) in &secrets {
        seal(&vault, owner, field, &format!("again-{field}"));
        assert_eq!(
            open(&vault, owner, field).unwrap(),
            Some(format!("again-{field}"))
        );
    }
}

fn a_cached_row_is_never_served_past_a_newer_write(t: &TestStore) {
    // The record cache trusts the config_version counter, which anyone who
    // can write the database can set back; the ledger's tag is read fresh.
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    seal(&vault, &conn("c1"), "token", "old-1");
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("old-1")
    );
    let counter = count(store, "SELECT n FROM config_version");
    // Another process writes a new value; the counter is then set back.
    let other_store = Arc::new(t.reopen());
    let other = open_vault(&other_store, &key_file(dir));
    seal(&other, &conn("c1"), "token", "new-2");
    exec(store, "UPDATE config_version SET n = ?1", params![counter]);
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("new-2")
    );
    // A restored row with the counter set back: the cached current row is
    // served, never the restored one.
    let current = copy_row(store, &conn("c1"), "token");
    seal(&vault, &conn("c1"), "token", "new-3");
    let counter = count(store, "SELECT n FROM config_version");
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("new-3")
    );
    put_back(store, &current);
    exec(store, "UPDATE config_version SET n = ?1", params![counter]);
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("new-3")
    );
}

fn a_deleted_secret_put_back_is_refused(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    add_connection(store, "c2");
    seal(&vault, &conn("c1"), "token", "value-t");
    seal(&vault, &conn("c1"), "password", "value-p");
    seal(&vault, &conn("c2"), "token", "value-2");
    let token = copy_row(store, &conn("c1"), "token");
    let password = copy_row(store, &conn("c1"), "password");
    let other = copy_row(store, &conn("c2"), "token");

    // One field deleted, then put back.
    assert!(write_vault(store, |tx| vault.delete_secret(tx, &conn("c1"), "token")).unwrap());
    assert_eq!(open(&vault, &conn("c1"), "token").unwrap(), None);
    put_back(store, &token);
    let what = conn("c1").describe("token");
    assert_restored(open(&vault, &conn("c1"), "token"), true, &what);
    let restarted = open_vault(store, &key_file(dir));
    assert_restored(open(&restarted, &conn("c1"), "token"), true, &what);

    // Every secret of an owner deleted, then one put back.
    write_vault(store, |tx| vault.delete_secrets(tx, &conn("c1"))).unwrap();
    put_back(store, &password);
    let what = conn("c1").describe("password");
    assert_restored(open(&vault, &conn("c1"), "password"), true, &what);

    // A connection removed as `airlock connection rm` does it, then put back
    // with its secret.
    write_vault(store, |tx| {
        vault.delete_secrets(tx, &conn("c2"))?;
        tx.execute("DELETE FROM connections WHERE id = 'c2'", params![])?;
        Ok(())
    })
    .unwrap();
    add_connection(store, "c2");
    put_back(store, &other);
    let what = conn("c2").describe("token");
    assert_restored(open(&vault, &conn("c2"), "token"), true, &what);

    // Re-entering fixes it.
    seal(&vault, &conn("c2"), "token", "value-3");
    assert_eq!(
        open(&vault, &conn("c2"), "token").unwrap().as_deref(),
        Some("value-3")
    );
}

fn a_secret_deleted_by_a_cascade_is_forgotten_at_the_next_write(t: &TestStore) {
    // Deleting an OAuth app row with SQL takes its secret with it (ON DELETE
    // CASCADE) without the vault seeing it. Put back as it was, the app's
    // last secret is still the one the ledger names, until the next write
    // of any secret drops entries whose row is gone.
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_oauth_app(store, "app");
    add_connection(store, "c1");
    let app = SecretOwner::OAuthApp("app".to_string());
    seal(&vault, &app, "client-secret", "cs-1");
    let row = copy_row(store, &app, "client-secret");
    exec(store, "DELETE FROM oauth_apps WHERE id = 'app'", params![]);
    assert_eq!(open(&vault, &app, "client-secret").unwrap(), None);
    seal(&vault, &conn("c1"), "token", "value");
    add_oauth_app(store, "app");
    put_back(store, &row);
    assert_restored(
        open(&vault, &app, "client-secret"),
        true,
        &app.describe("client-secret"),
    );
}

fn rotation_refuses_a_row_restored_within_the_version(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    add_connection(store, "c2");
    seal(&vault, &conn("c1"), "token", "old-1");
    seal(&vault, &conn("c2"), "token", "value-2");
    let backup = copy_row(store, &conn("c1"), "token");
    seal(&vault, &conn("c1"), "token", "new-1");
    put_back(store, &backup);

    // Re-encrypting it under a new version would launder it: refused, and
    // nothing changes.
    let before = vault.versions().unwrap();
    assert_restored(
        vault.rotate().map(|_| None),
        false,
        &conn("c1").describe("token"),
    );
    assert_eq!(vault.versions().unwrap(), before);
    assert_eq!(
        open(&vault, &conn("c2"), "token").unwrap().as_deref(),
        Some("value-2")
    );

    seal(&vault, &conn("c1"), "token", "new-2");
    let ledger_before = ledger_meta(store);
    assert_eq!(vault.rotate().unwrap(), 2);
    // Rotation keeps row ids, so the ledger is untouched.
    assert_eq!(ledger_meta(store).tag, ledger_before.tag);
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("new-2")
    );
    vault.retire(1).unwrap();
    assert_eq!(
        open(&vault, &conn("c2"), "token").unwrap().as_deref(),
        Some("value-2")
    );
}

fn a_whole_vault_snapshot_is_caught_only_by_a_running_process(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    seal(&vault, &conn("c1"), "token", "old-1");
    let row = copy_row(store, &conn("c1"), "token");
    let snapshot = ledger_meta(store);
    seal(&vault, &conn("c1"), "token", "new-2");
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("new-2")
    );

    // The row and the ledger as they were: self-consistent, so only a
    // process that verified the newer ledger can tell.
    put_back(store, &row);
    set_ledger_meta(store, &snapshot);
    match open(&vault, &conn("c1"), "token") {
        Err(e @ VaultError::LedgerRolledBack { seen, found }) => {
            assert!(seen > found, "{e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains("older copy") && msg.contains("restart"),
                "{msg}"
            );
            assert!(!msg.contains("old-1") && !msg.contains("new-2"), "{msg}");
        }
        other => panic!("expected LedgerRolledBack, got {other:?}"),
    }
    // A restarted process cannot: the master key is the same, and nothing
    // outside the database remembers the newer ledger.
    let restarted = open_vault(store, &key_file(dir));
    assert_eq!(
        open(&restarted, &conn("c1"), "token").unwrap().as_deref(),
        Some("old-1")
    );

    // The ledger alone put back, with the rows as they are: the ledger names
    // rows that are gone, so even a restarted process refuses them.
    seal(&restarted, &conn("c1"), "token", "new-3");
    assert_eq!(
        open(&restarted, &conn("c1"), "token").unwrap().as_deref(),
        Some("new-3")
    );
    set_ledger_meta(store, &snapshot);
    assert!(matches!(
        open(&restarted, &conn("c1"), "token"),
        Err(VaultError::LedgerRolledBack { .. })
    ));
    let again = open_vault(store, &key_file(dir));
    assert_restored(
        open(&again, &conn("c1"), "token"),
        false,
        &conn("c1").describe("token"),
    );
}

fn an_altered_or_removed_ledger_refuses_every_secret_until_re_entered(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    add_connection(store, "c1");
    add_connection(store, "c2");
    seal(&vault, &conn("c1"), "token", "value-1");
    seal(&vault, &conn("c2"), "token", "value-2");
    assert!(open(&vault, &conn("c1"), "token").unwrap().is_some());
    let good = ledger_meta(store);

    let refused = |vault: &Vault, problem: &str| match open(vault, &conn("c1"), "token") {
        Err(e @ VaultError::LedgerInvalid { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(problem) && msg.contains("re-enter"), "{msg}");
        }
        other => panic!("expected LedgerInvalid, got {other:?}"),
    };
    // Its tag altered.
    let mut tag = good.tag.clone().unwrap();
    tag[0] ^= 1;
    set_ledger_meta(
        store,
        &ledger::Stored {
            ledger: good.ledger.clone(),
            tag: Some(tag),
        },
    );
    refused(&vault, "does not verify under the master key");
    // Its content altered: a process that verified the content under this
    // tag keeps what it verified; any other refuses it.
    let mut content = good.ledger.clone().unwrap();
    *content.last_mut().unwrap() ^= 1;
    set_ledger_meta(
        store,
        &ledger::Stored {
            ledger: Some(content),
            tag: good.tag.clone(),
        },
    );
    assert!(open(&vault, &conn("c1"), "token").unwrap().is_some());
    refused(
        &open_vault(store, &key_file(dir)),
        "does not verify under the master key",
    );

    // Removed: a restart does not adopt the rows as a vault from before the
    // ledger, since they were sealed with one.
    set_ledger_meta(store, &ledger::Stored::default());
    refused(&vault, "is missing");
    let vault = open_vault(store, &key_file(dir));
    refused(&vault, "is missing");
    assert!(ledger_meta(store).ledger.is_none());

    // Re-entering a secret starts a new ledger holding only it.
    seal(&vault, &conn("c1"), "token", "value-3");
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some("value-3")
    );
    assert_restored(
        open(&vault, &conn("c2"), "token"),
        true,
        &conn("c2").describe("token"),
    );
    seal(&vault, &conn("c2"), "token", "value-4");
    assert_eq!(
        open(&vault, &conn("c2"), "token").unwrap().as_deref(),
        Some("value-4")
    );
}

/// Turn `owner`'s `field` into a row as an airlock from before the ledger
/// wrote it: sealed under the old associated data.
fn make_legacy(store: &Store, vault: &Vault, owner: &SecretOwner, field: &str) -> Vec<u8> {
    let row = copy_row(store, owner, field);
    let key = vault.ring().keys[&row.key_version].clone();
    let aad = secret_aad(&row.id, owner, field, row.key_version);
    let plain = crypto::open(&key, MAGIC_SEALED, &aad, &row.ciphertext).unwrap();
    let legacy_aad = secret_aad_in(AAD_SECRET_LEGACY, &row.id, owner, field, row.key_version);
    let legacy = crypto::seal(&key, MAGIC_SEALED, row.key_version, &legacy_aad, &plain).unwrap();
    exec(
        store,
        "UPDATE secrets SET ciphertext = ?1 WHERE id = ?2",
        params![legacy, row.id],
    );
    legacy_aad
}

fn a_vault_from_before_the_ledger_adopts_its_secrets_once(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    let secrets = every_kind(store);
    for (owner, field) in &secrets {
        seal(&vault, owner, field, &format!("value-{field}"));
    }
    vault.rotate().unwrap();
    let legacy_aads: Vec<Vec<u8>> = secrets
        .iter()
        .map(|(o, f)| make_legacy(store, &vault, o, f))
        .collect();
    // One of them altered: adopted as it is, it keeps failing to decrypt.
    let (bad_owner, bad_field) = (conn("c2"), "api-key");
    let mut bad = copy_row(store, &bad_owner, bad_field).ciphertext;
    *bad.last_mut().unwrap() ^= 1;
    set_ciphertext(store, "c2", bad_field, &bad);
    set_ledger_meta(store, &ledger::Stored::default());
    drop(vault);

    let vault = open_vault(store, &key_file(dir));
    let adopted = ledger_meta(store);
    assert!(adopted.ledger.is_some() && adopted.tag.is_some());
    for ((owner, field), legacy_aad) in secrets.iter().zip(&legacy_aads) {
        if (owner, *field) == (&bad_owner, bad_field) {
            assert!(matches!(
                open(&vault, owner, field),
                Err(VaultError::Decrypt { .. })
            ));
            continue;
        }
        assert_eq!(
            open(&vault, owner, field).unwrap(),
            Some(format!("value-{field}"))
        );
        // Resealed under the ledger's associated data, same id and version.
        let row = copy_row(store, owner, field);
        let key = vault.ring().keys[&row.key_version].clone();
        assert!(crypto::open(&key, MAGIC_SEALED, legacy_aad, &row.ciphertext).is_err());
    }
    // Adopted once: opening again changes nothing.
    let again = open_vault(store, &key_file(dir));
    assert_eq!(ledger_meta(store).tag, adopted.tag);
    assert_eq!(
        open(&again, &conn("c1"), "access-token")
            .unwrap()
            .as_deref(),
        Some("value-access-token")
    );
    // And what it adopted is protected from now on.
    let (owner, field) = (conn("c1"), "refresh-token");
    let backup = copy_row(store, &owner, field);
    seal(&vault, &owner, field, "value-new");
    put_back(store, &backup);
    assert_restored(open(&again, &owner, field), false, &owner.describe(field));
}

fn readers_never_fail_while_another_process_rewrites_secrets(t: &TestStore) {
    const SECRETS: usize = 6;
    const ROUNDS: usize = 15;
    const READERS: usize = 3;
    let (dir, store) = (&t.dir, &t.store);
    let vault = Arc::new(open_vault(store, &key_file(dir)));
    // Its own connection to the same file: another process, to SQLite.
    let other_store = Arc::new(t.reopen());
    let other = Arc::new(open_vault(&other_store, &key_file(dir)));
    for i in 0..SECRETS {
        add_connection(store, &format!("c{i}"));
        seal(&vault, &conn(&format!("c{i}")), "token", "value-0");
    }
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (other, done) = (Arc::clone(&other), Arc::clone(&done));
        std::thread::spawn(move || {
            for round in 1..=ROUNDS {
                for i in 0..SECRETS {
                    seal(
                        &other,
                        &conn(&format!("c{i}")),
                        "token",
                        &format!("value-{round}"),
                    );
                }
                if round % 5 == 0 {
                    other.rotate().unwrap();
                }
            }
            done.store(true, Ordering::SeqCst);
        })
    };
    let readers: Vec<_> = (0..READERS)
        .map(|t| {
            let (vault, done) = (Arc::clone(&vault), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut failures = Vec::new();
                let mut reads = 0usize;
                while !done.load(Ordering::SeqCst) || reads < 50 {
                    let i = (t + reads) % SECRETS;
                    match open(&vault, &conn(&format!("c{i}")), "token") {
                        Ok(Some(v)) if v.starts_with("value-") => {}
                        other => failures.push(format!("c{i}: {other:?}")),
                    }
                    reads += 1;
                }
                failures
            })
        })
        .collect();
    writer.join().unwrap();
    for reader in readers {
        let failures = reader.join().unwrap();
        assert!(failures.is_empty(), "{failures:?}");
    }
    for i in 0..SECRETS {
        assert_eq!(
            open(&vault, &conn(&format!("c{i}")), "token").unwrap(),
            Some(format!("value-{ROUNDS}"))
        );
    }
}

/// What the ledger check adds to a read: `cargo test -p airlock --release
/// --lib vault::tests::open_secret_cost -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test"]
fn open_secret_cost() {
    const N: u32 = 20_000;
    let (dir, store) = fixture();
    let vault = open_vault(&store, &key_file(&dir));
    for i in 0..50 {
        add_connection(&store, &format!("c{i}"));
        seal(
            &vault,
            &conn(&format!("c{i}")),
            "token",
            "a-bearer-token-of-some-length",
        );
    }
    let owner = conn("c7");
    let time = |label: &str, f: &dyn Fn()| {
        for _ in 0..1000 {
            f();
        }
        let start = std::time::Instant::now();
        for _ in 0..N {
            f();
        }
        let each = start.elapsed() / N;
        println!("{label}: {each:?} per read");
    };
    for _ in 0..2 {
        // What a read did before the ledger: the cached row, opened.
        time("without the ledger check", &|| {
            read_vault(&store, |conn| {
                let row = vault
                    .sealed
                    .get_or_read(conn, "bench", |c| sealed_row(c, &owner, "token", false))?;
                let row = row.as_ref().as_ref().unwrap();
                let plain = vault.open_sealed(conn, &owner, "token", row)?;
                secret_text(&owner, "token", &plain)
            })
            .unwrap();
        });
        time("open_secret (with the ledger check)", &|| {
            vault.open_secret(&owner, "token").unwrap().unwrap();
        });
        time("open_secret_in (uncached, one statement)", &|| {
            read_vault(&store, |conn| vault.open_secret_in(conn, &owner, "token"))
                .unwrap()
                .unwrap();
        });
    }
}

// ----- nothing leaks -------------------------------------------------------

#[test]
fn canary_never_reaches_the_database_files() {
    let (dir, store) = fixture();
    let vault = open_vault(&store, &key_file(&dir));
    add_connection(&store, "c1");
    add_oauth_app(&store, "app");
    let canary = format!("CANARY-{}", hex::encode(rand::random::<[u8; 12]>()));
    seal(&vault, &conn("c1"), "token", &canary);
    seal(
        &vault,
        &SecretOwner::OAuthApp("app".to_string()),
        "client-secret",
        &canary,
    );
    add_oauth_state(&store, &vault, "state", "c1", canary.as_bytes());
    vault.rotate().unwrap();
    assert_eq!(
        open(&vault, &conn("c1"), "token").unwrap().as_deref(),
        Some(canary.as_str())
    );

    let check = |when: &str| {
        let (db, wal) = db_bytes(dir.path());
        assert!(!db.is_empty() || !wal.is_empty());
        for (name, bytes) in [("db", &db), ("wal", &wal)] {
            assert!(
                !contains(bytes, canary.as_bytes()),
                "canary in {name} {when}"
            );
            assert!(
                !contains(bytes, hex::encode(&canary).as_bytes()),
                "hex canary in {name} {when}"
            );
        }
    };
    check("before checkpoint");
    assert!(
        !db_bytes(dir.path()).1.is_empty(),
        "expected a WAL to inspect"
    );
    store
        .read(|c| {
            c.query("PRAGMA wal_checkpoint(TRUNCATE)", params![])?;
            Ok::<_, StoreError>(())
        })
        .unwrap();
    check("after checkpoint");
}

fn debug_output_never_contains_key_material(t: &TestStore) {
    let (dir, store) = (&t.dir, &t.store);
    let vault = open_vault(store, &key_file(dir));
    let text = std::fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    let kek = STANDARD.decode(text.trim()).unwrap();
    let data_key = vault.ring().keys[&1].expose().to_vec();
    vault.rotate().unwrap();
    let data_key2 = vault.ring().keys[&2].expose().to_vec();

    let debug = format!("{vault:?} {:?} {:#?}", key_file(dir), vault);
    for key in [&kek, &data_key, &data_key2] {
        for needle in [
            STANDARD.encode(key),
            hex::encode(key),
            format!("{:?}", &key[..4]).trim_end_matches(']').to_string(),
            format!("{:x?}", &key[..4])
                .trim_end_matches(']')
                .to_string(),
        ] {
            assert!(!debug.contains(&needle), "{needle} in {debug}");
        }
    }
    assert!(
        debug.contains("Vault") && debug.contains("active"),
        "{debug}"
    );

    let pass = KeySource::Passphrase(SecretString::from("my-passphrase"));
    let debug = format!("{pass:?} {}", pass.describe());
    assert!(!debug.contains("my-passphrase"), "{debug}");
    let t2 = TestStore::new(t.backend());
    let store2 = &t2.store;
    let vault = open_vault(store2, &pass);
    assert!(!format!("{vault:?}").contains("my-passphrase"));
}

#[test]
fn secure_delete_is_on() {
    let (_dir, store) = fixture();
    let on: i64 = store
        .read(|c| c.query_row("PRAGMA secure_delete", params![], |r| r.get(0)))
        .unwrap();
    assert_eq!(on, 1);
}
