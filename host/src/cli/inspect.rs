//! `airlock plugin inspect`: the manifest and contract of a `.wasm`, read
//! and checked without instantiating it.

use super::output;
use airlock::{Plugin, Runtime, RuntimeConfig};

pub fn run(wasm: &[u8], json: bool) -> anyhow::Result<()> {
    // A non-pooling runtime with no cache: inspection compiles once to check
    // imports and exports, and reserves nothing.
    let runtime = Runtime::new(RuntimeConfig {
        pooling: false,
        ..RuntimeConfig::default()
    })?;
    let plugin = runtime.load(wasm)?;
    let signer = airlock::signing::verify(wasm)?;
    let m = plugin.manifest();
    let doc = serde_json::json!({
        "id": m.id,
        "name": m.name,
        "version": m.version,
        "api_version": m.api_version,
        "category": m.category,
        "description": m.description,
        "sha256": plugin.sha256(),
        "interfaces": plugin.interfaces(),
        "category_problem": plugin.check_category().err().map(|e| e.to_string()),
        "auth": m.auth,
        "egress": m.egress,
        "settings": m.settings,
        "signer": signer.as_ref().map(|s| serde_json::json!({
            "fingerprint": s.fingerprint,
            "public_key": s.public_key,
            "algorithm": s.algorithm,
        })),
    });
    output::emit(json, &doc, |_| {
        print_human(&plugin);
        match &signer {
            Some(s) => println!("  signer:      {} ({})", s.fingerprint, s.public_key),
            None => println!("  signer:      unsigned"),
        }
    })
}

/// The human form of `plugin inspect`: what an operator approves at install.
fn print_human(plugin: &Plugin) {
    let m = plugin.manifest();
    println!("{} ({}) {}", m.name, m.id, m.version);
    if !m.description.is_empty() {
        println!("  {}", m.description);
    }
    println!("  category:    {}", m.category);
    if let Err(mismatch) = plugin.check_category() {
        // Install refuses such a file; say why before anyone tries.
        println!("  WARNING:     {mismatch}");
    }
    println!("  api version: {}", m.api_version);
    println!("  sha256:      {}", plugin.sha256());
    let ifaces: Vec<&str> = plugin.interfaces().iter().map(|i| i.name()).collect();
    println!("  exports:     {}", ifaces.join(", "));
    let kinds: Vec<String> = m
        .auth
        .kinds
        .iter()
        .map(|k| {
            serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        })
        .collect();
    println!(
        "  auth:        {}",
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        }
    );
    if let Some(o) = &m.auth.oauth2 {
        println!(
            "  oauth2:      authorize {} token {} issuer {} scopes [{}] \
             (an operator may override the endpoints per org app or connection)",
            o.authorize_url,
            o.token_url,
            o.issuer
                .as_deref()
                .unwrap_or("(any at the authorize origin)"),
            o.scopes.join(" ")
        );
    }
    println!(
        "  egress:      the connection's base-url origin{}",
        if m.egress.is_empty() {
            " only"
        } else {
            ", plus:"
        }
    );
    for e in &m.egress {
        println!(
            "    - {e}{}",
            if e.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", e.reason)
            }
        );
    }
    println!("  settings:");
    if m.settings.is_empty() {
        println!("    (none)");
    }
    for s in &m.settings {
        println!(
            "    - {} ({:?}{}){}",
            s.name,
            s.kind,
            if s.required { ", required" } else { "" },
            if s.description.is_empty() {
                String::new()
            } else {
                format!(": {}", s.description)
            }
        );
    }
}
