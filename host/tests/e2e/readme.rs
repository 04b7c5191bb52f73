//! The README's threat model names a test for every defence: each name
//! must be a test that exists, so a renamed or deleted test cannot leave a
//! promise without one.

const README: &str = include_str!("../../../README.md");

fn e2e_file(module: &str) -> Option<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e");
    std::fs::read_to_string(dir.join(format!("{module}.rs")))
        .or_else(|_| std::fs::read_to_string(dir.join(module).join("mod.rs")))
        .ok()
}

#[test]
fn every_test_the_threat_model_names_exists() {
    let start = README.find("## Threat model").expect("the section");
    let section = &README[start..];
    let end = section[3..].find("\n## ").map_or(section.len(), |e| e + 3);
    let rows: Vec<&str> = section[..end]
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| from") && !l.starts_with("|---"))
        .collect();
    assert!(rows.len() >= 15, "the table has its rows: {}", rows.len());
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for row in rows {
        let tests = row.trim_end_matches('|').rsplit('|').next().unwrap();
        assert!(tests.contains('`'), "a row without a test: {row}");
        for name in tests.split('`').skip(1).step_by(2) {
            if name.contains('/') {
                assert!(
                    repo.join(name).exists(),
                    "{name} (named in: {row}) does not exist"
                );
            } else {
                let (module, test) = name
                    .split_once("::")
                    .unwrap_or_else(|| panic!("`{name}` is neither a path nor module::test"));
                let source = e2e_file(module)
                    .unwrap_or_else(|| panic!("no tests/e2e/{module}.rs for `{name}`"));
                if test != "*" {
                    assert!(
                        source.contains(&format!("fn {test}(")),
                        "tests/e2e/{module}.rs has no test `{test}`"
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 30, "{checked} names checked");
}
