//! The README's architecture promise, held against the code: the library's
//! modules are floors along the call path, and each imports only from the
//! floors below it (so no two modules import each other, directly or in a
//! longer circle). Read from the source text, like a reviewer would.

use std::path::{Path, PathBuf};

/// The floors, bottom up, as the README's Architecture section lists them.
/// A module may name (`crate::<module>`) only modules earlier in this list.
const FLOORS: &[&str] = &[
    "dirs",
    "limits",
    "net",
    "plugin_state",
    "redact",
    "metrics",
    "manifest",
    "signing",
    "store",
    "audit",
    "vault",
    "credential",
    "connection",
    "egress",
    "runtime",
    "service",
    "server",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `host/src` belongs to.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every `crate::<name>` the file's code (not its comments) names.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push((n + 1, name));
            }
        }
    }
    found
}

#[test]
fn every_module_imports_only_from_lower_floors() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let floor = |m: &str| FLOORS.iter().position(|f| *f == m);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for file in &files {
        let module = module_of(&src, file);
        // The crate face declares the floors; the binary's commands use the
        // library through its public paths (`airlock::`), not `crate::`.
        if matches!(module.as_str(), "lib" | "main" | "cli") {
            continue;
        }
        let own = floor(&module).unwrap_or_else(|| {
            panic!(
                "{} belongs to module `{module}`, which the floor list (and the README) lacks",
                file.display()
            )
        });
        let text = std::fs::read_to_string(file).unwrap();
        for (line, name) in crate_paths(&text) {
            checked += 1;
            match floor(&name) {
                Some(f) if f <= own => {}
                Some(_) => wrong.push(format!(
                    "{}:{line}: `{module}` imports `{name}`, a higher floor",
                    file.display()
                )),
                None => wrong.push(format!(
                    "{}:{line}: `crate::{name}` is not a module of the floor list \
                     (name the module, not the crate face's re-export)",
                    file.display()
                )),
            }
        }
    }
    assert!(
        checked > 100,
        "only {checked} crate paths found: is the scan broken?"
    );
    assert!(
        wrong.is_empty(),
        "imports that run back up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_scan_sees_an_import_that_runs_back_up() {
    let found = crate_paths("use crate::service::Airlock; // crate::cli\n  x(crate::net::Origin)");
    assert_eq!(
        found,
        vec![(1, "service".to_string()), (2, "net".to_string())]
    );
}
