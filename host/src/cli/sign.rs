//! `airlock plugin sign` (with an OpenSSH private key, or attaching a
//! signature `ssh-keygen -Y sign -n airlock-plugin` made) and `airlock
//! plugin verify` (who signed a file, whether it verifies, and whether this
//! host's trust policy trusts that key for the plugin). The format is
//! `airlock::signing`'s.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{ArgGroup, Args};
use zeroize::Zeroizing;

use super::output;
use airlock::Airlock;
use airlock::signing::{self, Signature, SigningKey};

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("with").required(true).args(["key", "signature"])))]
pub struct SignArgs {
    /// The plugin's `.wasm` file.
    file: PathBuf,
    /// An unencrypted OpenSSH private key to sign with (e.g.
    /// ~/.ssh/id_ed25519). For a key with a passphrase, sign with
    /// ssh-keygen and attach the result with --signature.
    #[arg(long, value_name = "KEY")]
    key: Option<PathBuf>,
    /// A signature to attach, made with
    /// `ssh-keygen -Y sign -n airlock-plugin -f KEY FILE` (FILE.sig); it is
    /// checked against the file before anything is written.
    #[arg(long, value_name = "SIG")]
    signature: Option<PathBuf>,
    /// Where to write the signed file; default: replace FILE.
    #[arg(long, short, value_name = "OUT")]
    output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The plugin's `.wasm` file.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<Zeroizing<String>> {
    std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .with_context(|| format!("reading {}", path.display()))
}

/// Write `bytes` to `path` through a temporary file beside it, so a
/// failure never leaves half a plugin.
fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("wasm.signing");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn sign(args: SignArgs) -> anyhow::Result<()> {
    let wasm = read(&args.file)?;
    let (signed, signature) = match (&args.key, &args.signature) {
        (Some(key), _) => {
            let key = SigningKey::from_openssh(&read_text(key)?)
                .with_context(|| format!("reading the private key {}", key.display()))?;
            signing::sign(&wasm, &key).map_err(anyhow::Error::from)
        }
        (None, Some(sig)) => signing::attach(&wasm, &read_text(sig)?)
            .with_context(|| format!("attaching {}", sig.display())),
        (None, None) => unreachable!("clap requires --key or --signature"),
    }
    .with_context(|| format!("signing {}", args.file.display()))?;
    let out = args.output.as_ref().unwrap_or(&args.file);
    write(out, &signed)?;
    println!(
        "signed {} by {} ({})",
        out.display(),
        signature.fingerprint,
        signature.algorithm
    );
    println!("  key: {}", signature.public_key);
    Ok(())
}

/// What `plugin verify` found, as printed.
#[derive(Debug, serde::Serialize)]
struct Report {
    file: String,
    plugin: String,
    signed: bool,
    verified: bool,
    fingerprint: Option<String>,
    public_key: Option<String>,
    algorithm: Option<String>,
    trusted: bool,
    trusted_as: Option<String>,
    require_signature: bool,
    error: Option<String>,
}

pub fn verify(airlock: &Airlock, args: VerifyArgs) -> anyhow::Result<()> {
    let wasm = read(&args.file)?;
    let manifest = airlock::Manifest::from_wasm(&wasm)
        .with_context(|| format!("reading the manifest of {}", args.file.display()))?;
    let policy = airlock.trust_policy()?;
    // The signature as parsed (an invalid one still names the key it
    // claims), then verified over the bytes before it.
    let (claimed, outcome) = match signing::read(&wasm) {
        Ok(file) => (file.signature.clone(), file.verified()),
        Err(e) => (None, Err(e)),
    };
    let verified: Option<&Signature> = match &outcome {
        Ok(signature) => signature.as_ref(),
        Err(_) => None,
    };
    let trusted_as = verified
        .and_then(|s| policy.trusted_as(&s.fingerprint, &manifest.id))
        .map(|k| k.name.clone());
    let report = Report {
        file: args.file.display().to_string(),
        plugin: manifest.id.clone(),
        signed: claimed.is_some() || outcome.is_err(),
        verified: verified.is_some(),
        fingerprint: claimed.as_ref().map(|s| s.fingerprint.clone()),
        public_key: claimed.as_ref().map(|s| s.public_key.clone()),
        algorithm: claimed.as_ref().map(|s| s.algorithm.clone()),
        trusted: trusted_as.is_some(),
        trusted_as,
        require_signature: policy.require_signature,
        error: outcome.as_ref().err().map(ToString::to_string),
    };
    output::emit(args.json, &report, print_report)?;
    match outcome {
        Ok(Some(_)) => Ok(()),
        Ok(None) => bail!(
            "{} is not signed: sign it with `airlock plugin sign`",
            args.file.display()
        ),
        Err(e) => Err(e).with_context(|| format!("verifying {}", args.file.display())),
    }
}

fn print_report(r: &Report) {
    println!("plugin {} ({})", r.plugin, r.file);
    let Some(fingerprint) = &r.fingerprint else {
        match &r.error {
            Some(e) => println!("  signature: INVALID: {e}"),
            None => println!("  signer:    unsigned"),
        }
        return;
    };
    println!(
        "  signer:    {fingerprint} ({})",
        r.algorithm.as_deref().unwrap_or_default()
    );
    println!(
        "  key:       {}",
        r.public_key.as_deref().unwrap_or_default()
    );
    match &r.error {
        None => println!("  signature: verified over every byte before it (code and manifest)"),
        Some(e) => println!("  signature: INVALID: {e}"),
    }
    let policy = if r.require_signature {
        "require-signature is on"
    } else {
        "require-signature is off"
    };
    match &r.trusted_as {
        Some(name) => println!(
            "  trust:     trusted for {} as `{name}` ({policy})",
            r.plugin
        ),
        None => println!(
            "  trust:     NOT trusted for {} by this host ({policy})",
            r.plugin
        ),
    }
}

/// Who signed a planned file and whether the trust policy trusts them.
pub fn signer_line(signer: Option<&airlock::service::Signer>) -> String {
    match signer {
        None => "unsigned".into(),
        Some(s) => match &s.trusted_as {
            Some(name) => format!("{} ({}), trusted as `{name}`", s.fingerprint, s.algorithm),
            None => format!("{} ({}), not a trusted key", s.fingerprint, s.algorithm),
        },
    }
}
