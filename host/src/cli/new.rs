//! `airlock plugin new`: a plugin project from a template built into the
//! binary (`templates/<lang>/common` with `templates/<lang>/<kind>` over
//! it), with the WIT contract for languages that generate bindings from it
//! and, for Rust, the SDK it builds against.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use super::UsageError;

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded.rs"));
}

/// What the plugin is: decides the world it targets and what it exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Only `connector` (a connection test).
    Connector,
    /// `connector`, `tickets` and `sync` (ServiceNow-like).
    Tickets,
    /// `connector`, `documents` and `sync` (Confluence-like).
    Documents,
    /// `connector` and `chat` (an AI provider).
    Ai,
}

impl Kind {
    fn dir(self) -> &'static str {
        match self {
            Kind::Connector => "connector",
            Kind::Tickets => "tickets",
            Kind::Documents => "documents",
            Kind::Ai => "ai",
        }
    }

    fn world(self) -> &'static str {
        match self {
            Kind::Connector => "connector-plugin",
            Kind::Tickets => "tickets-plugin",
            Kind::Documents => "documents-plugin",
            Kind::Ai => "ai-provider",
        }
    }

    /// The manifest's `category`.
    fn category(self) -> &'static str {
        match self {
            Kind::Ai => "ai-provider",
            other => other.dir(),
        }
    }
}

/// The language the project is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// Rust with `airlock-sdk` (cargo, wasm32-wasip2).
    Rust,
    /// JavaScript through componentize-js (jco).
    Js,
    /// Python through componentize-py.
    Python,
}

impl Lang {
    fn dir(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    /// What to run in the new project, in order.
    fn next_steps(self) -> &'static [&'static str] {
        match self {
            Lang::Rust => &[
                "cargo build --release --target wasm32-wasip2",
                "cargo test -p smoke",
            ],
            Lang::Js => &["npm run build", "npm test"],
            Lang::Python => &["python3 build.py", "python3 -m unittest"],
        }
    }
}

/// `airlock plugin new` arguments.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The project's directory name and the plugin's id: a-z, 0-9 and `-`,
    /// starting with a letter (e.g. `acme-desk`).
    pub name: String,
    /// What the plugin is.
    #[arg(long, value_enum, default_value = "connector")]
    pub kind: Kind,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// Where to create the project directory (default: here).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Rust only: build against the SDK crate at this path instead of the
    /// copy written into `vendor/airlock-sdk` (e.g. a checkout of airlock's
    /// `sdk/` or an unpacked `cargo package` of it).
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

/// The names a template's placeholders are filled with.
struct Names {
    id: String,
    name: String,
    krate: String,
}

fn names(raw: &str) -> Result<Names, UsageError> {
    let valid = raw.len() <= 64
        && raw.starts_with(|c: char| c.is_ascii_lowercase())
        && raw
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !raw.ends_with('-');
    if !valid {
        return Err(UsageError(format!(
            "`{raw}` cannot be a plugin id: use 1-64 of a-z, 0-9 and `-`, starting with a \
             letter (e.g. `acme-desk`)"
        )));
    }
    let name = raw
        .split('-')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Names {
        id: raw.to_string(),
        name,
        krate: raw.replace('-', "_"),
    })
}

/// The files of `lang`'s template for `kind`: `common`, then the kind's
/// own files over it. Paths are relative to the project.
fn template(lang: Lang, kind: Kind) -> Vec<(String, &'static [u8])> {
    let mut out: Vec<(String, &'static [u8])> = Vec::new();
    for layer in ["common", kind.dir()] {
        let prefix = format!("{}/{layer}/", lang.dir());
        for (path, bytes) in embedded::TEMPLATES {
            if let Some(rel) = path.strip_prefix(&prefix) {
                let rel = match rel.rsplit_once('/') {
                    Some((dir, "gitignore")) => format!("{dir}/.gitignore"),
                    None if rel == "gitignore" => ".gitignore".to_string(),
                    _ => rel.to_string(),
                };
                out.retain(|(p, _)| *p != rel);
                out.push((rel, bytes));
            }
        }
    }
    out
}

fn fill(text: &str, names: &Names, kind: Kind, sdk: &str) -> String {
    text.replace("{{id}}", &names.id)
        .replace("{{name}}", &names.name)
        .replace("{{crate}}", &names.krate)
        .replace("{{world}}", kind.world())
        .replace("{{category}}", kind.category())
        .replace("{{sdk}}", sdk)
}

fn write(root: &Path, rel: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The SDK's `Cargo.toml` made standalone: the workspace's inherited keys
/// spelled out, its lints (the workspace's) dropped.
fn standalone_sdk_manifest(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim() == "[lints]" {
            break;
        }
        let inherited = |key: &str, value: &str| {
            (line.trim() == format!("{key}.workspace = true")).then(|| format!("{key} = {value:?}"))
        };
        let line = inherited("version", env!("CARGO_PKG_VERSION"))
            .or_else(|| inherited("edition", "2024"))
            .or_else(|| inherited("rust-version", env!("CARGO_PKG_RUST_VERSION")))
            .or_else(|| inherited("license", env!("CARGO_PKG_LICENSE")))
            .unwrap_or_else(|| line.to_string());
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Write the SDK (its source, README, WIT and a standalone manifest) under
/// `root/vendor/airlock-sdk`; answers the dependency line.
fn vendor_sdk(root: &Path) -> anyhow::Result<String> {
    let dir = "vendor/airlock-sdk";
    for (path, bytes) in embedded::SDK {
        if *path == "Cargo.toml" {
            let text = std::str::from_utf8(bytes).context("the SDK manifest is not UTF-8")?;
            write(
                root,
                &format!("{dir}/{path}"),
                standalone_sdk_manifest(text).as_bytes(),
            )?;
        } else {
            write(root, &format!("{dir}/{path}"), bytes)?;
        }
    }
    for (path, bytes) in embedded::WIT {
        write(root, &format!("{dir}/wit/{path}"), bytes)?;
    }
    Ok(format!("{{ path = \"{dir}\" }}"))
}

pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let names = names(&args.name)?;
    let parent = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let root = parent.join(&names.id);
    if root.exists() && std::fs::read_dir(&root).map_or(true, |mut d| d.next().is_some()) {
        bail!(
            "{} exists and is not empty: choose another name or --dir",
            root.display()
        );
    }
    if args.sdk_path.is_some() && args.lang != Lang::Rust {
        return Err(UsageError("--sdk-path is for --lang rust only".into()).into());
    }
    let files = template(args.lang, args.kind);
    if files.is_empty() {
        bail!("this airlock has no {:?} template", args.lang);
    }
    let sdk = match (&args.lang, &args.sdk_path) {
        (Lang::Rust, Some(path)) => {
            let path = std::path::absolute(path)
                .with_context(|| format!("resolving {}", path.display()))?;
            format!("{{ path = {:?} }}", path.display().to_string())
        }
        (Lang::Rust, None) => vendor_sdk(&root)?,
        _ => String::new(),
    };
    for (rel, bytes) in &files {
        match std::str::from_utf8(bytes) {
            Ok(text) => write(&root, rel, fill(text, &names, args.kind, &sdk).as_bytes())?,
            Err(_) => write(&root, rel, bytes)?,
        }
    }
    if args.lang != Lang::Rust {
        for (path, bytes) in embedded::WIT {
            write(&root, &format!("wit/{path}"), bytes)?;
        }
    }
    println!(
        "created {} ({}, world {}, {} files)\nnext, in {}:",
        names.id,
        args.lang.dir(),
        args.kind.world(),
        files.len(),
        root.display()
    );
    for step in args.lang.next_steps() {
        println!("  {step}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_and_named() {
        let n = names("acme-desk").unwrap();
        assert_eq!(
            (n.name.as_str(), n.krate.as_str()),
            ("Acme Desk", "acme_desk")
        );
        for bad in [
            "",
            "Acme",
            "9lives",
            "a_b",
            "trailing-",
            &"x".repeat(65),
            "a b",
        ] {
            assert!(names(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_language_has_every_kind_and_a_kind_overrides_common() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            for kind in [Kind::Connector, Kind::Tickets, Kind::Documents, Kind::Ai] {
                let files = template(lang, kind);
                let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
                assert!(
                    paths.contains(&"airlock.toml"),
                    "{lang:?} {kind:?}: {paths:?}"
                );
                let mut unique = paths.clone();
                unique.sort();
                unique.dedup();
                assert_eq!(unique.len(), paths.len(), "{lang:?} {kind:?}: {paths:?}");
            }
        }
    }

    #[test]
    fn the_vendored_sdk_manifest_stands_alone() {
        let (_, bytes) = embedded::SDK
            .iter()
            .find(|(p, _)| *p == "Cargo.toml")
            .unwrap();
        let text = standalone_sdk_manifest(std::str::from_utf8(bytes).unwrap());
        assert!(!text.contains("workspace"), "{text}");
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["package"]["name"].as_str(), Some("airlock-sdk"));
        assert_eq!(
            parsed["package"]["version"].as_str(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(parsed["dependencies"].get("wit-bindgen").is_some());
    }
}
