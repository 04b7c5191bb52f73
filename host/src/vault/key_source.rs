//! Where the key-encryption key (KEK) comes from: the environment, a key
//! file, or a passphrase stretched with Argon2id.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::VaultError;
use super::crypto::{KEY_LEN, Key256, fill_random};

/// Environment variable holding the master key: base64 of exactly 32 bytes.
pub const MASTER_KEY_VAR: &str = "AIRLOCK_MASTER_KEY";
/// Environment variable holding a master passphrase (Argon2id).
pub const MASTER_PASSPHRASE_VAR: &str = "AIRLOCK_MASTER_PASSPHRASE";
/// File name of the key file in the data directory when neither variable is set.
pub const KEY_FILE: &str = "master.key";

/// `vault_meta` names this module reads and writes.
pub(crate) const META_KIND: &str = "kek-kind";
pub(crate) const META_SALT: &str = "argon2-salt";
pub(crate) const META_PARAMS: &str = "argon2-params";

/// `kek-kind` values: a 256-bit key (environment or file: the same key can
/// move between them) or a passphrase.
pub(crate) const KIND_KEY: &[u8] = b"key";
pub(crate) const KIND_PASSPHRASE: &[u8] = b"passphrase";

const SALT_LEN: usize = 16;

/// Looks an environment variable up (tests pass their own; setting the real
/// environment is `unsafe` and process-wide).
pub(crate) type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

pub(crate) fn process_env(name: &str) -> Option<OsString> {
    std::env::var_os(name)
}

/// Where the master key (the key-encryption key) comes from.
pub enum KeySource {
    /// `AIRLOCK_MASTER_KEY`: base64 of exactly 32 bytes, read when the vault
    /// opens.
    Env,
    /// A file holding 32 raw bytes or their base64 encoding; created (mode
    /// 0600) when the vault is created, never afterwards.
    File(PathBuf),
    /// A passphrase stretched with Argon2id; the salt and cost parameters
    /// are stored in `vault_meta`.
    Passphrase(SecretString),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env => f.write_str("Env"),
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Passphrase(_) => f.write_str("Passphrase([REDACTED])"),
        }
    }
}

impl KeySource {
    /// `AIRLOCK_MASTER_KEY` if set, else `AIRLOCK_MASTER_PASSPHRASE` if set,
    /// else the key file `<data_dir>/master.key`. A variable that is set but
    /// unusable is an error, never a fall-back to the next source.
    pub fn from_env(data_dir: &Path) -> Result<Self, VaultError> {
        Self::from_lookup(data_dir, &process_env)
    }

    pub(crate) fn from_lookup(data_dir: &Path, env: EnvLookup<'_>) -> Result<Self, VaultError> {
        if env(MASTER_KEY_VAR).is_some() {
            // Validate now, so a bad value fails before anything else starts.
            env_key(env)?;
            return Ok(Self::Env);
        }
        if let Some(value) = env(MASTER_PASSPHRASE_VAR) {
            let bad = |problem: &str| VaultError::BadPassphrase {
                var: MASTER_PASSPHRASE_VAR,
                problem: problem.to_string(),
            };
            let value = Zeroizing::new(value.into_string().map_err(|_| bad("is not UTF-8"))?);
            if value.is_empty() {
                return Err(bad("is empty"));
            }
            return Ok(Self::Passphrase(SecretString::from(value.as_str())));
        }
        Ok(Self::File(data_dir.join(KEY_FILE)))
    }

    /// Where the key comes from, for the start-up line. Never the key.
    /// The opened vault's description (`Vault::describe_source`) adds
    /// whether a key file was created and whether it sits next to the data.
    pub fn describe(&self) -> String {
        match self {
            Self::Env => format!("environment variable {MASTER_KEY_VAR}"),
            Self::File(path) => format!("key file {}", path.display()),
            Self::Passphrase(_) => "passphrase (Argon2id)".to_string(),
        }
    }

    pub(crate) fn kind(&self) -> &'static [u8] {
        match self {
            Self::Env | Self::File(_) => KIND_KEY,
            Self::Passphrase(_) => KIND_PASSPHRASE,
        }
    }

    /// The KEK of an existing vault. Creates nothing.
    pub(crate) fn load_existing(
        &self,
        meta: &BTreeMap<String, Vec<u8>>,
        db: &str,
        env: EnvLookup<'_>,
    ) -> Result<Key256, VaultError> {
        match self {
            Self::Env => env_key(env),
            Self::File(path) => read_key_file(path)?.ok_or_else(|| VaultError::MissingKeyFile {
                path: path.clone(),
                db: db.to_string(),
            }),
            Self::Passphrase(passphrase) => {
                let salt = meta.get(META_SALT).ok_or_else(|| {
                    VaultError::Corrupt("the vault uses a passphrase but has no salt".to_string())
                })?;
                let params = meta
                    .get(META_PARAMS)
                    .and_then(|p| Argon2Params::parse(p))
                    .ok_or_else(|| {
                        VaultError::Corrupt(
                            "the vault's Argon2id parameters are missing or invalid".to_string(),
                        )
                    })?;
                derive(passphrase, salt, params)
            }
        }
    }

    /// The KEK for a vault being created, the `vault_meta` rows that go
    /// with it, and whether a key file was created.
    pub(crate) fn load_for_init(&self, env: EnvLookup<'_>) -> Result<InitKek, VaultError> {
        let mut meta = vec![(META_KIND, self.kind().to_vec())];
        let (kek, created_file) = match self {
            Self::Env => (env_key(env)?, false),
            Self::File(path) => match read_key_file(path)? {
                Some(key) => (key, false),
                None => create_key_file(path)?,
            },
            Self::Passphrase(passphrase) => {
                let mut salt = vec![0u8; SALT_LEN];
                fill_random(&mut salt)?;
                let params = Argon2Params::DEFAULT;
                let kek = derive(passphrase, &salt, params)?;
                meta.push((META_SALT, salt));
                meta.push((META_PARAMS, params.encode().into_bytes()));
                (kek, false)
            }
        };
        Ok(InitKek {
            kek,
            meta,
            created_file,
        })
    }
}

pub(crate) struct InitKek {
    pub(crate) kek: Key256,
    pub(crate) meta: Vec<(&'static str, Vec<u8>)>,
    pub(crate) created_file: bool,
}

/// Decode key text (environment variable or key file): base64 of 32 bytes.
/// The error says what is wrong without echoing any of the input.
fn decode_key_text(text: &str) -> Result<Key256, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".to_string());
    }
    let decoded = STANDARD
        .decode(text)
        .or_else(|_| STANDARD_NO_PAD.decode(text))
        .map(Zeroizing::new)
        .map_err(|_| "is not valid base64".to_string())?;
    Key256::from_slice(&decoded)
        .ok_or_else(|| format!("decodes to {} bytes, not {KEY_LEN}", decoded.len()))
}

fn env_key(env: EnvLookup<'_>) -> Result<Key256, VaultError> {
    let bad = |problem: String| VaultError::BadEnvKey {
        var: MASTER_KEY_VAR,
        problem,
    };
    let value = env(MASTER_KEY_VAR).ok_or_else(|| bad("is no longer set".to_string()))?;
    let value = Zeroizing::new(
        value
            .into_string()
            .map_err(|_| bad("is not UTF-8".to_string()))?,
    );
    decode_key_text(&value).map_err(bad)
}

/// The key in `path`, `None` if the file does not exist.
fn read_key_file(path: &Path) -> Result<Option<Key256>, VaultError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(VaultError::KeyFileIo {
                action: "read",
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let bad = |problem: String| VaultError::BadKeyFile {
        path: path.to_path_buf(),
        problem,
    };
    if bytes.len() == KEY_LEN {
        return Ok(Key256::from_slice(&bytes));
    }
    if bytes.is_empty() {
        return Err(bad("is empty (truncated?)".to_string()));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        bad(format!(
            "is {} bytes long and not text (truncated or corrupted?)",
            bytes.len()
        ))
    })?;
    decode_key_text(text)
        .map(Some)
        .map_err(|problem| bad(format!("is {} bytes long and {problem}", bytes.len())))
}

/// Create the key file with a fresh key: written to a private (0600)
/// temporary file in the same directory, fsynced, then moved into place
/// without replacing anything, so the key file is either absent or whole.
/// Returns `(key, true)`, or `(existing key, false)` if another process
/// created the file first.
fn create_key_file(path: &Path) -> Result<(Key256, bool), VaultError> {
    let io = |action: &'static str| {
        move |source| VaultError::KeyFileIo {
            action,
            path: path.to_path_buf(),
            source,
        }
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let key = Key256::random()?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".master.key.");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(io("create"))?;
    let mut text = Zeroizing::new(STANDARD.encode(key.expose()));
    text.push('\n');
    tmp.write_all(text.as_bytes()).map_err(io("write"))?;
    tmp.as_file().sync_all().map_err(io("write"))?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {}
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            // Another process won the race: use its key.
            return match read_key_file(path)? {
                Some(existing) => Ok((existing, false)),
                None => Err(io("create")(e.error)),
            };
        }
        Err(e) => return Err(io("create")(e.error)),
    }
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("create"))?;
    Ok((key, true))
}

/// Argon2id cost parameters, stored with the vault so a later default does
/// not change the key of an existing vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Argon2Params {
    /// Memory in KiB.
    m: u32,
    /// Passes.
    t: u32,
    /// Lanes.
    p: u32,
}

impl Argon2Params {
    /// 64 MiB, 3 passes, 1 lane (RFC 9106's second recommendation with one
    /// lane: the argon2 crate computes lanes sequentially). Tests use the
    /// minimum so debug builds stay fast.
    pub(crate) const DEFAULT: Self = if cfg!(test) {
        Self { m: 8, t: 1, p: 1 }
    } else {
        Self {
            m: 64 * 1024,
            t: 3,
            p: 1,
        }
    };

    fn encode(self) -> String {
        format!("argon2id:v=19:m={}:t={}:p={}", self.m, self.t, self.p)
    }

    fn parse(raw: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(raw).ok()?;
        let rest = text.strip_prefix("argon2id:v=19:")?;
        let mut fields = rest.split(':');
        let mut next = |name: &str| -> Option<u32> {
            fields
                .next()?
                .strip_prefix(name)?
                .strip_prefix('=')?
                .parse()
                .ok()
        };
        let params = Self {
            m: next("m")?,
            t: next("t")?,
            p: next("p")?,
        };
        if fields.next().is_some() {
            return None;
        }
        // Bounds: a tampered row must not make start-up allocate gigabytes.
        let sane = (1..=16).contains(&params.p)
            && (8 * params.p..=1024 * 1024).contains(&params.m)
            && (1..=64).contains(&params.t);
        sane.then_some(params)
    }
}

fn derive(
    passphrase: &SecretString,
    salt: &[u8],
    params: Argon2Params,
) -> Result<Key256, VaultError> {
    let kdf = |e: argon2::Error| VaultError::Kdf(e.to_string());
    let argon_params =
        argon2::Params::new(params.m, params.t, params.p, Some(KEY_LEN)).map_err(kdf)?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    argon
        .hash_password_into(passphrase.expose_secret().as_bytes(), salt, &mut out[..])
        .map_err(kdf)?;
    Ok(Key256::from_slice(&out[..]).expect("32-byte output"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_params_roundtrip_and_bounds() {
        let p = Argon2Params {
            m: 65536,
            t: 3,
            p: 1,
        };
        assert_eq!(Argon2Params::parse(p.encode().as_bytes()), Some(p));
        assert_eq!(
            Argon2Params::parse(b"argon2id:v=19:m=4000000:t=3:p=1"),
            None
        );
        assert_eq!(Argon2Params::parse(b"argon2id:v=19:m=64:t=3:p=1:x=1"), None);
        assert_eq!(Argon2Params::parse(b"argon2i:v=19:m=64:t=3:p=1"), None);
    }

    #[test]
    fn key_text_errors_do_not_echo_input() {
        for bad in ["sécret-value-not-base64!", "c2VjcmV0", "   "] {
            let problem = decode_key_text(bad).unwrap_err();
            assert!(
                !problem.contains(bad.trim()) || bad.trim().is_empty(),
                "{problem}"
            );
        }
        let key = STANDARD.encode([7u8; 32]);
        assert_eq!(
            decode_key_text(&format!(" {key}\n")).unwrap().expose(),
            &[7u8; 32]
        );
        let unpadded = STANDARD_NO_PAD.encode([7u8; 32]);
        assert!(decode_key_text(&unpadded).is_ok());
    }
}
