//! What the console's files may contain: the rules that keep it safe to
//! render text from plugins and upstreams, and keep it self-contained.

use super::{asset, asset_names};

fn scripts() -> impl Iterator<Item = (&'static str, &'static str)> {
    asset_names()
        .filter(|n| n.ends_with(".js"))
        .map(|n| (n, asset(n).unwrap()))
}

#[test]
fn every_file_in_the_assets_folder_is_served_and_every_served_file_exists() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/server/console/assets");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut served: Vec<String> = asset_names().map(str::to_string).collect();
    served.sort();
    assert_eq!(on_disk, served, "assets/ and the ASSETS table differ");
}

#[test]
fn no_script_builds_markup_from_strings() {
    // Text from plugins and upstreams must only ever reach the page as
    // text nodes; these are the ways it could become markup or code.
    for (name, body) in scripts() {
        for banned in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
            "setTimeout('",
            "srcdoc",
            "DOMParser",
            "createContextualFragment",
        ] {
            assert!(!body.contains(banned), "{name} uses {banned}");
        }
    }
}

#[test]
fn the_page_has_no_inline_script_or_style() {
    let page = asset("index.html").unwrap();
    assert!(!page.contains("<style"), "inline <style> in index.html");
    assert!(!page.contains(" style="), "style attribute in index.html");
    for tag in page.split("<script").skip(1) {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(
            open.contains("src=\"/console/"),
            "inline script: <script{open}>"
        );
        assert!(tag[tag.find('>').unwrap() + 1..].starts_with("</script>"));
    }
    assert!(
        !page.contains(" on"),
        "an inline event handler attribute in index.html"
    );
}

#[test]
fn nothing_is_loaded_from_another_origin() {
    for name in asset_names() {
        let body = asset(name).unwrap();
        for needle in ["http://", "https://", "//cdn", "@import", "url("] {
            assert!(!body.contains(needle), "{name} refers to {needle}");
        }
    }
}

#[test]
fn every_module_import_is_a_served_file() {
    for (name, body) in scripts() {
        for line in body.lines().filter(|l| l.starts_with("import ")) {
            let target = line
                .rsplit("from '")
                .next()
                .and_then(|t| t.split('\'').next())
                .unwrap();
            let file = target.trim_start_matches("./");
            assert!(
                asset(file).is_some(),
                "{name} imports {target}, which the console does not serve"
            );
        }
    }
}

#[test]
fn the_policy_forbids_inline_code_framing_and_other_origins() {
    let csp = super::CONTENT_SECURITY_POLICY;
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe"), "{csp}");
}
