//! Signed plugins end to end, with real keys: Ed25519 keys generated here
//! (and, where `ssh-keygen` is installed, keys and signatures made by
//! OpenSSH itself), the `airlock` binary on a data directory, the library,
//! and the management API. A signature covers the exact bytes before it;
//! the operator's trust policy decides whose signatures count, per plugin
//! id; a key change on upgrade is part of the capability diff.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::service::{AuthInput, NewConnection, Role, Scope, ServiceError, TrustError};
use airlock::signing::{self, SignatureError, SigningKey};
use serde_json::{Value, json};
use ssh_key::private::Ed25519Keypair;
use ssh_key::{HashAlg, LineEnding, PrivateKey};

use crate::api::{Api, Body};
use crate::common::{airlock_in, leb, with_manifest};

const MINIMAL_MANIFEST: &str = include_str!("../../../tests/guests/minimal/airlock.toml");

/// A publisher's Ed25519 key, generated for the test, with its private key
/// file and its `.pub` on disk.
struct Publisher {
    private: PrivateKey,
    key_file: PathBuf,
    pub_file: PathBuf,
    /// The `.pub` line, with its comment.
    public_key: String,
    /// The key alone (what a signature carries): no comment.
    bare: String,
    fingerprint: String,
}

fn publisher(dir: &Path, name: &str) -> Publisher {
    let mut private = PrivateKey::from(Ed25519Keypair::from_seed(&rand::random()));
    private.set_comment(format!("{name}@example"));
    let key_file = dir.join(name);
    let text = private.to_openssh(LineEnding::LF).unwrap();
    std::fs::write(&key_file, text.as_bytes()).unwrap();
    let public_key = private.public_key().to_openssh().unwrap();
    let pub_file = dir.join(format!("{name}.pub"));
    std::fs::write(&pub_file, format!("{public_key}\n")).unwrap();
    let bare = ssh_key::PublicKey::new(private.public_key().key_data().clone(), "");
    Publisher {
        bare: bare.to_openssh().unwrap(),
        fingerprint: private.fingerprint(HashAlg::Sha256).to_string(),
        private,
        key_file,
        pub_file,
        public_key,
    }
}

impl Publisher {
    /// `wasm` signed by this publisher (through the library's signing).
    fn sign(&self, wasm: &[u8]) -> Vec<u8> {
        let text = self.private.to_openssh(LineEnding::LF).unwrap();
        let key = SigningKey::from_openssh(&text).unwrap();
        signing::sign(wasm, &key).unwrap().0
    }

    /// An armored SSHSIG of `message` in `namespace`, as `ssh-keygen -Y
    /// sign -n NAMESPACE` makes it.
    fn armored(&self, namespace: &str, message: &[u8]) -> String {
        self.private
            .sign(namespace, HashAlg::Sha512, message)
            .unwrap()
            .to_pem(LineEnding::LF)
            .unwrap()
    }
}

fn minimal() -> Vec<u8> {
    std::fs::read(airlock_test_artifacts::MINIMAL).unwrap()
}

/// The minimal plugin at another version (its manifest rewritten).
fn minimal_at(version: &str) -> Vec<u8> {
    let manifest =
        MINIMAL_MANIFEST.replace("version = \"0.1.0\"", &format!("version = \"{version}\""));
    assert_ne!(manifest, MINIMAL_MANIFEST);
    with_manifest(&minimal(), &manifest)
}

/// `wasm` with one byte of `needle` (where it first occurs) flipped.
fn flipped(wasm: &[u8], needle: &[u8]) -> Vec<u8> {
    let at = wasm
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap_or_else(|| panic!("{:?} is in the file", String::from_utf8_lossy(needle)));
    let mut out = wasm.to_vec();
    out[at] ^= 1;
    out
}

/// `wasm` with a custom section `name` holding `content` appended.
fn with_section(wasm: &[u8], name: &str, content: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    leb(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    body.extend_from_slice(content);
    let mut out = wasm.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.to_str().unwrap().to_string()
}

/// `airlock ARGS --json` on `data`, which must succeed.
fn json_in(data: &Path, args: &[&str]) -> Value {
    let (code, out, err) = airlock_in(data, args, &[]);
    assert_eq!(code, 0, "airlock {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// `airlock ARGS` on `data`, expected to fail with `code`; its stderr.
fn fails_in(data: &Path, args: &[&str], code: i32) -> String {
    let (got, out, err) = airlock_in(data, args, &[]);
    assert_eq!(got, code, "airlock {args:?}: {out}{err}");
    err
}

#[test]
fn a_signed_plugin_installs_and_shows_its_signer() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let alice = publisher(keys.path(), "alice");
    let plain = write(keys.path(), "plugin.wasm", &minimal());
    let signed = keys.path().join("signed.wasm");
    let signed = signed.to_str().unwrap();
    let key = alice.key_file.to_str().unwrap();
    let (code, out, err) = airlock_in(
        data.path(),
        &["plugin", "sign", &plain, "--key", key, "-o", signed],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("by {} (ssh-ed25519)", alice.fingerprint)),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&plain).unwrap(),
        minimal(),
        "-o leaves the input"
    );

    let inspected = json_in(data.path(), &["plugin", "inspect", signed, "--json"]);
    assert_eq!(
        inspected["signer"]["fingerprint"],
        alice.fingerprint.as_str()
    );
    assert_eq!(inspected["signer"]["public_key"], alice.bare.as_str());
    let unsigned = json_in(data.path(), &["plugin", "inspect", &plain, "--json"]);
    assert_eq!(unsigned["signer"], Value::Null);
    let (_, text, _) = airlock_in(data.path(), &["plugin", "inspect", &plain], &[]);
    assert!(text.contains("signer:      unsigned"), "{text}");

    let installed = json_in(
        data.path(),
        &["plugin", "install", signed, "--approve", "--json"],
    );
    assert_eq!(installed["installed"], true);
    assert_eq!(
        installed["signer"]["fingerprint"],
        alice.fingerprint.as_str()
    );
    assert_eq!(installed["signer"]["trusted_as"], Value::Null);
    let listed = json_in(data.path(), &["plugin", "list", "--json"]);
    assert_eq!(listed[0]["signer"], alice.fingerprint.as_str());

    // Signing in place replaces the signature: one section, the new key.
    let bob = publisher(keys.path(), "bob");
    let (code, _, err) = airlock_in(
        data.path(),
        &[
            "plugin",
            "sign",
            signed,
            "--key",
            bob.key_file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let resigned = std::fs::read(signed).unwrap();
    let signer = signing::verify(&resigned).unwrap().unwrap();
    assert_eq!(signer.fingerprint, bob.fingerprint);
    assert_eq!(
        signing::read(&resigned).unwrap().message,
        minimal().as_slice()
    );
}

#[test]
fn a_byte_changed_after_signing_is_refused_whatever_the_policy() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let alice = publisher(keys.path(), "alice");
    let signed = alice.sign(&minimal());
    // One byte of the code's data, and one of the embedded manifest.
    for (what, needle) in [("code", &b"connected as "[..]), ("manifest", b"Site URL")] {
        let tampered = write(
            keys.path(),
            &format!("{what}.wasm"),
            &flipped(&signed, needle),
        );
        let err = fails_in(
            data.path(),
            &["plugin", "install", &tampered, "--approve"],
            1,
        );
        assert!(err.contains("plugin `minimal` is refused"), "{what}: {err}");
        assert!(
            err.contains(&format!(
                "the signature by {} does not verify",
                alice.fingerprint
            )),
            "{what}: {err}"
        );
        assert!(err.contains("changed after it was signed"), "{what}: {err}");
        let err = fails_in(data.path(), &["plugin", "verify", &tampered], 1);
        assert!(err.contains("does not verify"), "{what}: {err}");
    }
    assert_eq!(
        json_in(data.path(), &["plugin", "list", "--json"]),
        json!([])
    );
    let policy = json_in(data.path(), &["trust", "list", "--json"]);
    assert_eq!(policy["require_signature"], false, "the policy was off");
}

#[test]
fn a_stripped_signature_is_refused_under_require_signature_and_accepted_as_unsigned_when_off() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let alice = publisher(keys.path(), "alice");
    let signed = alice.sign(&minimal());
    let stripped = signing::read(&signed).unwrap().message.to_vec();
    assert_eq!(stripped, minimal());
    let file = write(keys.path(), "stripped.wasm", &stripped);

    let (code, out, _) = airlock_in(data.path(), &["trust", "require-signature", "on"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("require-signature: on"), "{out}");
    let err = fails_in(data.path(), &["plugin", "install", &file, "--approve"], 1);
    assert!(err.contains("plugin `minimal` is not signed"), "{err}");
    assert!(err.contains("require-signature is on"), "{err}");
    assert_eq!(
        json_in(data.path(), &["plugin", "list", "--json"]),
        json!([])
    );

    airlock_in(data.path(), &["trust", "require-signature", "off"], &[]);
    let installed = json_in(
        data.path(),
        &["plugin", "install", &file, "--approve", "--json"],
    );
    assert_eq!(installed["installed"], true);
    assert_eq!(installed["signer"], Value::Null);
    assert_eq!(
        json_in(data.path(), &["plugin", "list", "--json"])[0]["signer"],
        Value::Null
    );
}

#[test]
fn an_unknown_key_is_refused_until_trusted_for_that_plugin_id() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let alice = publisher(keys.path(), "alice");
    let file = write(keys.path(), "signed.wasm", &alice.sign(&minimal()));
    airlock_in(d, &["trust", "require-signature", "on"], &[]);
    let install = ["plugin", "install", file.as_str(), "--approve", "--json"];

    let err = fails_in(d, &install, 1);
    assert!(
        err.contains(&format!("signed by {}", alice.fingerprint)),
        "{err}"
    );
    assert!(err.contains("does not trust for `minimal`"), "{err}");
    assert!(
        err.contains(&format!(
            "hint: airlock trust add NAME --key '{}' --plugin minimal",
            alice.bare
        )),
        "{err}"
    );

    // Trusted for another plugin id only: still refused, and it says so.
    let added = json_in(
        d,
        &[
            "trust",
            "add",
            "alice-desk",
            "--key",
            &alice.public_key,
            "--plugin",
            "desk",
            "--json",
        ],
    );
    assert_eq!(added["fingerprint"], alice.fingerprint.as_str());
    assert_eq!(added["plugin"], "desk");
    let err = fails_in(d, &install, 1);
    assert!(err.contains("(only for desk)"), "{err}");

    // Trusted for this plugin id (from the publisher's .pub): installed.
    let pub_file = alice.pub_file.to_str().unwrap();
    let (code, out, err) = airlock_in(
        d,
        &[
            "trust",
            "add",
            "alice",
            "--key-file",
            pub_file,
            "--plugin",
            "minimal",
        ],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("trusted `alice` ({})", alice.fingerprint)),
        "{out}"
    );
    let installed = json_in(d, &install);
    assert_eq!(installed["signer"]["trusted_as"], "alice");

    let listed = json_in(d, &["trust", "list", "--json"]);
    assert_eq!(listed["require_signature"], true);
    let names: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "alice-desk"]);
    let (_, table, _) = airlock_in(d, &["trust", "list"], &[]);
    assert!(table.contains("require-signature: on"), "{table}");
    assert!(table.contains("plugin minimal"), "{table}");
}

#[test]
fn a_key_trusted_for_every_plugin_vouches_for_any_id_and_rm_stops_it() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let alice = publisher(keys.path(), "alice");
    let file = write(keys.path(), "signed.wasm", &alice.sign(&minimal()));
    airlock_in(d, &["trust", "require-signature", "on"], &[]);
    let (code, out, _) = airlock_in(
        d,
        &["trust", "add", "alice", "--key", &alice.public_key],
        &[],
    );
    assert_eq!(code, 0);
    assert!(out.contains("for every plugin"), "{out}");
    let plan = ["plugin", "install", file.as_str()];
    // Not approved (exit 2), but past the policy: the plan is printed.
    let (code, out, _) = airlock_in(d, &plan, &[]);
    assert_eq!(code, 2);
    assert!(
        out.contains(&format!(
            "signer:  {} (ssh-ed25519), trusted as `alice`",
            alice.fingerprint
        )),
        "{out}"
    );
    let (code, out, _) = airlock_in(d, &["trust", "rm", "alice"], &[]);
    assert_eq!(code, 0);
    assert!(out.contains("no longer trusted: `alice`"), "{out}");
    let err = fails_in(d, &plan, 1);
    assert!(err.contains("does not trust for `minimal`"), "{err}");
    let err = fails_in(d, &["trust", "rm", "alice"], 1);
    assert!(err.contains("trusted key `alice` not found"), "{err}");
    let err = fails_in(d, &["trust", "add", "x", "--key", "ssh-ed25519 garbage"], 1);
    assert!(err.contains("not an OpenSSH public key"), "{err}");
}

#[test]
fn a_key_change_on_upgrade_is_flagged_in_the_cli_plan() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let alice = publisher(keys.path(), "alice");
    let mallory = publisher(keys.path(), "mallory");
    let v1 = write(keys.path(), "v1.wasm", &alice.sign(&minimal()));
    json_in(d, &["plugin", "install", &v1, "--approve", "--json"]);

    let v2 = write(keys.path(), "v2.wasm", &mallory.sign(&minimal_at("0.2.0")));
    let (code, out, _) = airlock_in(d, &["plugin", "install", &v2], &[]);
    assert_eq!(code, 2, "not approved");
    let line = format!("signer {} -> {}", alice.fingerprint, mallory.fingerprint);
    assert!(out.contains("version 0.1.0 -> 0.2.0"), "{out}");
    assert!(out.contains(&format!("    {line}\n")), "{out}");
    assert!(out.contains("not a trusted key"), "{out}");

    let unsigned = write(keys.path(), "v3.wasm", &minimal_at("0.3.0"));
    let planned = json_in(d, &["plugin", "install", &unsigned, "--approve", "--json"]);
    let changes: Vec<&str> = planned["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.contains(&format!("signer {} -> (unsigned)", alice.fingerprint).as_str()),
        "{changes:?}"
    );
    // The same key on the next upgrade is no change.
    let v4 = write(keys.path(), "v4.wasm", &alice.sign(&minimal_at("0.4.0")));
    json_in(d, &["plugin", "install", &v4, "--approve", "--json"]);
    let v5 = write(keys.path(), "v5.wasm", &alice.sign(&minimal_at("0.5.0")));
    let planned = json_in(d, &["plugin", "install", &v5, "--approve", "--json"]);
    assert!(
        !planned["changes"].to_string().contains("signer"),
        "{}",
        planned["changes"]
    );
}

#[test]
fn plugin_verify_prints_the_signer_and_exits_non_zero_unless_it_verifies() {
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let d = data.path();
    let alice = publisher(keys.path(), "alice");
    let file = write(keys.path(), "signed.wasm", &alice.sign(&minimal()));
    let (code, out, err) = airlock_in(d, &["plugin", "verify", &file], &[]);
    assert_eq!(code, 0, "{err}");
    for part in [
        format!("signer:    {} (ssh-ed25519)", alice.fingerprint),
        format!("key:       {}", alice.bare),
        "signature: verified".into(),
        "NOT trusted for minimal by this host (require-signature is off)".into(),
    ] {
        assert!(out.contains(&part), "{part}: {out}");
    }
    airlock_in(
        d,
        &["trust", "add", "alice", "--key", &alice.public_key],
        &[],
    );
    let report = json_in(d, &["plugin", "verify", &file, "--json"]);
    assert_eq!(
        report,
        json!({
            "file": file, "plugin": "minimal", "signed": true, "verified": true,
            "fingerprint": alice.fingerprint, "algorithm": "ssh-ed25519",
            "public_key": alice.bare,
            "trusted": true, "trusted_as": "alice", "require_signature": false, "error": null,
        })
    );

    let plain = write(keys.path(), "plain.wasm", &minimal());
    let (code, out, err) = airlock_in(d, &["plugin", "verify", &plain], &[]);
    assert_eq!(code, 1);
    assert!(out.contains("signer:    unsigned"), "{out}");
    assert!(err.contains("is not signed"), "{err}");

    let tampered = write(
        keys.path(),
        "bad.wasm",
        &flipped(&alice.sign(&minimal()), b"Site URL"),
    );
    let (code, out, err) = airlock_in(d, &["plugin", "verify", &tampered, "--json"], &[]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["signed"], true);
    assert_eq!(report["verified"], false);
    assert_eq!(report["trusted"], false);
    assert_eq!(report["fingerprint"], alice.fingerprint.as_str());
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .contains("does not verify")
    );
    assert!(err.contains("verifying"), "{err}");
}

/// What planning `wasm` on a fresh host refuses it with.
fn refusal(wasm: Vec<u8>) -> ServiceError {
    let dir = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    airlock.plan_install(wasm).unwrap_err()
}

fn signature_error(e: ServiceError) -> SignatureError {
    match e {
        ServiceError::Signature { id, error } => {
            assert_eq!(id, "minimal");
            error
        }
        other => panic!("expected a signature error, got {other}"),
    }
}

#[test]
fn hostile_signature_sections_are_each_refused_with_a_clear_error() {
    let keys = tempfile::tempdir().unwrap();
    let alice = publisher(keys.path(), "alice");
    let signed = alice.sign(&minimal());
    let armored = signing::verify(&signed).unwrap().unwrap().armored;

    let twice = with_section(&signed, signing::SIGNATURE_SECTION, armored.as_bytes());
    let err = signature_error(refusal(twice));
    assert_eq!(err, SignatureError::Duplicate { count: 2 });
    assert!(
        err.to_string().contains("exactly one, as its last section"),
        "{err}"
    );

    let appended = with_section(&signed, "appended-after-signing", b"more");
    let err = signature_error(refusal(appended));
    assert!(matches!(err, SignatureError::NotLast { .. }), "{err}");
    assert!(
        err.to_string().contains("sign the final file again"),
        "{err}"
    );

    let garbage = "-----BEGIN SSH SIGNATURE-----\nZ2FyYmFnZQ==\n-----END SSH SIGNATURE-----\n";
    let err = signature_error(refusal(with_section(
        &minimal(),
        signing::SIGNATURE_SECTION,
        garbage.as_bytes(),
    )));
    assert!(matches!(err, SignatureError::Armor { .. }), "{err}");
    assert!(
        err.to_string().contains("not an armored SSH signature"),
        "{err}"
    );

    let other_purpose = alice.armored("file", &minimal());
    let err = signature_error(refusal(with_section(
        &minimal(),
        signing::SIGNATURE_SECTION,
        other_purpose.as_bytes(),
    )));
    assert_eq!(
        err,
        SignatureError::Namespace {
            found: "file".into()
        }
    );
    assert!(err.to_string().contains("-n airlock-plugin"), "{err}");
}

#[tokio::test]
async fn the_trust_policy_refusals_are_typed_and_name_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let airlock = crate::service::open(dir.path());
    let alice = publisher(keys.path(), "alice");
    // Installed unsigned before signatures were required: it keeps running.
    crate::service::install(&airlock, airlock_test_artifacts::MINIMAL);
    airlock.set_require_signature(true).unwrap();
    let server = crate::api::me_server().await;
    airlock
        .add_connection(NewConnection {
            name: "before".into(),
            plugin_id: "minimal".into(),
            settings: [("base-url".to_string(), server.uri())].into(),
            auth: AuthInput::None,
            scope: Scope::Global,
        })
        .unwrap();
    let report = airlock
        .call("before", "connector.test-connection", json!({}), None)
        .await
        .unwrap();
    assert_eq!(report["account"], "alice", "{report}");

    match airlock.plan_install(minimal_at("0.2.0")).unwrap_err() {
        ServiceError::Trust(TrustError::Unsigned { id }) => assert_eq!(id, "minimal"),
        other => panic!("{other}"),
    }
    match airlock
        .plan_install(alice.sign(&minimal_at("0.2.0")))
        .unwrap_err()
    {
        ServiceError::Trust(TrustError::Untrusted {
            id, fingerprint, ..
        }) => assert_eq!(
            (id.as_str(), fingerprint),
            ("minimal", alice.fingerprint.clone())
        ),
        other => panic!("{other}"),
    }
    airlock
        .trust_key("alice", &alice.public_key, Some("minimal"))
        .unwrap();
    let plan = airlock
        .plan_install(alice.sign(&minimal_at("0.2.0")))
        .unwrap();
    // Stopped trusting between the plan and the approval: refused then.
    airlock.distrust_key("alice").unwrap();
    let err = airlock.install(&plan, true).unwrap_err();
    assert!(
        matches!(err, ServiceError::Trust(TrustError::Untrusted { .. })),
        "{err}"
    );
    let installed = airlock.list_plugins().unwrap();
    assert_eq!(
        (installed[0].version.as_str(), &installed[0].signer),
        ("0.1.0", &None)
    );
}

/// Upload `wasm` over the API.
async fn upload(api: &Api, token: &str, wasm: Vec<u8>) -> crate::api::Resp {
    let body = Body::Raw("application/wasm", wasm);
    api.send("POST", "/api/v1/plugins", Some(token), body).await
}

#[tokio::test]
async fn the_api_upload_shows_the_signer_and_refuses_per_the_policy() {
    let api = Api::start().await;
    let admin = api.token("admin", Role::Admin, None);
    let keys = tempfile::tempdir().unwrap();
    let alice = publisher(keys.path(), "alice");

    api_policy_off(&api, &admin, &alice).await;
    let on = json!({ "require_signature": true });
    let set = api
        .send(
            "PUT",
            "/api/v1/trust/require-signature",
            Some(&admin),
            Body::Json(on),
        )
        .await;
    assert_eq!(set.json()["require_signature"], true, "{}", set.text());
    let refused = upload(&api, &admin, minimal()).await;
    refused.assert_error(422, "unsigned_plugin");
    assert!(refused.text().contains("plugin `minimal` is not signed"));
    let refused = upload(&api, &admin, alice.sign(&minimal())).await;
    refused.assert_error(422, "untrusted_plugin");
    assert!(
        refused.text().contains(&alice.fingerprint),
        "{}",
        refused.text()
    );
    assert!(
        refused.text().contains("POST /api/v1/trust/keys"),
        "{}",
        refused.text()
    );

    let key = json!({ "name": "alice", "key": alice.public_key, "plugin": "minimal" });
    let added = api
        .send("POST", "/api/v1/trust/keys", Some(&admin), Body::Json(key))
        .await;
    assert_eq!(added.status, 201, "{}", added.text());
    assert_eq!(added.json()["fingerprint"], alice.fingerprint.as_str());
    let up = upload(&api, &admin, alice.sign(&minimal())).await;
    assert_eq!(up.status, 202, "{}", up.text());
    assert_eq!(up.json()["signer"]["trusted_as"], "alice");
    let sha256 = up.json()["sha256"].clone();
    let approve = json!({ "sha256": sha256 });
    let record = api
        .send(
            "POST",
            "/api/v1/plugins/minimal/approve",
            Some(&admin),
            Body::Json(approve),
        )
        .await;
    assert_eq!(
        record.json()["signer"],
        alice.fingerprint.as_str(),
        "{}",
        record.text()
    );
    let listed = api
        .send("GET", "/api/v1/plugins", Some(&admin), Body::Empty)
        .await;
    assert_eq!(listed.json()[0]["signer"], alice.fingerprint.as_str());
    api_key_change(&api, &admin, &alice, keys.path()).await;
}

/// With the policy off: a signed upload shows its (untrusted) signer, an
/// unsigned one passes, a tampered one is refused all the same.
async fn api_policy_off(api: &Api, admin: &str, alice: &Publisher) {
    let up = upload(api, admin, alice.sign(&minimal())).await;
    assert_eq!(up.status, 202, "{}", up.text());
    let signer = &up.json()["signer"];
    assert_eq!(signer["fingerprint"], alice.fingerprint.as_str());
    assert_eq!(signer["public_key"], alice.bare);
    assert_eq!(signer["trusted_as"], Value::Null);
    let plain = upload(api, admin, minimal()).await;
    assert_eq!(
        plain.json()["signer"],
        Value::Null,
        "policy off: unsigned is fine"
    );
    let tampered = flipped(&alice.sign(&minimal()), b"connected as ");
    upload(api, admin, tampered)
        .await
        .assert_error(422, "invalid_signature");
}

/// An upgrade signed by another (trusted) key: the diff names both keys;
/// the key removed before approval, the approval is refused.
async fn api_key_change(api: &Api, admin: &str, alice: &Publisher, keys: &Path) {
    let bob = publisher(keys, "bob");
    let key = json!({ "name": "bob", "key": bob.public_key });
    let added = api
        .send("POST", "/api/v1/trust/keys", Some(admin), Body::Json(key))
        .await;
    assert_eq!(added.status, 201, "{}", added.text());
    let up = upload(api, admin, bob.sign(&minimal_at("0.2.0"))).await;
    assert_eq!(up.status, 202, "{}", up.text());
    let plan = up.json();
    let text = format!("signer {} -> {}", alice.fingerprint, bob.fingerprint);
    let entry = json!({ "change": "changed", "what": "signer", "text": text });
    assert!(
        plan["diff"].as_array().unwrap().contains(&entry),
        "{}",
        plan["diff"]
    );
    assert!(plan["changes"].as_array().unwrap().contains(&json!(text)));
    assert_eq!(plan["signer"]["trusted_as"], "bob");

    let policy = api
        .send("GET", "/api/v1/trust", Some(admin), Body::Empty)
        .await;
    assert_eq!(policy.json()["keys"].as_array().unwrap().len(), 2);
    let gone = api
        .send("DELETE", "/api/v1/trust/keys/bob", Some(admin), Body::Empty)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text());
    let approve = json!({ "sha256": plan["sha256"] });
    api.send(
        "POST",
        "/api/v1/plugins/minimal/approve",
        Some(admin),
        Body::Json(approve),
    )
    .await
    .assert_error(422, "untrusted_plugin");
    let installed = api.airlock.list_plugins().unwrap();
    assert_eq!(installed[0].version, "0.1.0");
}

/// `ssh-keygen`, when the machine has it (Debian: openssh-client).
fn ssh_keygen() -> Option<&'static str> {
    let found = Command::new("ssh-keygen").arg("-?").output().is_ok();
    found.then_some("ssh-keygen")
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A key made by `ssh-keygen -t TYPE` at `path` (passphrase `pass`).
fn keygen(path: &Path, kind: &str, pass: &str) {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-N",
            pass,
            "-C",
            "publisher@example",
            "-f",
        ])
        .arg(path));
}

#[test]
fn signatures_made_with_ssh_keygen_attach_verify_and_install() {
    let Some(ssh_keygen) = ssh_keygen() else {
        eprintln!("ssh-keygen is not installed (openssh-client): skipped");
        return;
    };
    let keys = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (k, d) = (keys.path(), data.path());
    keygen(&k.join("id_ed25519"), "ed25519", "");
    let plugin = write(k, "plugin.wasm", &minimal());
    run(Command::new(ssh_keygen)
        .args(["-Y", "sign", "-n", "airlock-plugin", "-f"])
        .arg(k.join("id_ed25519"))
        .arg(&plugin));
    let sig = format!("{plugin}.sig");
    let signed = k.join("signed.wasm");
    let signed = signed.to_str().unwrap();
    let (code, out, err) = airlock_in(
        d,
        &["plugin", "sign", &plugin, "--signature", &sig, "-o", signed],
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let listed = run(Command::new(ssh_keygen)
        .arg("-lf")
        .arg(k.join("id_ed25519.pub")));
    let fingerprint = String::from_utf8_lossy(&listed.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(
        out.contains(&fingerprint),
        "ssh-keygen -l: {fingerprint}; {out}"
    );

    let pub_file = k.join("id_ed25519.pub");
    let pub_file = pub_file.to_str().unwrap();
    let trust = [
        "trust",
        "add",
        "publisher",
        "--key-file",
        pub_file,
        "--plugin",
        "minimal",
    ];
    assert_eq!(airlock_in(d, &trust, &[]).0, 0);
    airlock_in(d, &["trust", "require-signature", "on"], &[]);
    let installed = json_in(d, &["plugin", "install", signed, "--approve", "--json"]);
    assert_eq!(installed["signer"]["fingerprint"], fingerprint.as_str());
    assert_eq!(installed["signer"]["trusted_as"], "publisher");

    not_attached(k, d, &sig);
    ssh_keygen_keys(k, d);
}

/// A signature ssh-keygen made for another file, or for another
/// namespace, is not attached (and the file is left as it was).
fn not_attached(k: &Path, d: &Path, sig: &str) {
    let other = write(k, "other.wasm", &minimal_at("0.9.0"));
    let err = fails_in(d, &["plugin", "sign", &other, "--signature", sig], 1);
    assert!(err.contains("does not verify"), "{err}");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        minimal_at("0.9.0"),
        "untouched"
    );
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(k.join("id_ed25519"))
        .arg(&other));
    let err = fails_in(
        d,
        &[
            "plugin",
            "sign",
            &other,
            "--signature",
            &format!("{other}.sig"),
        ],
        1,
    );
    assert!(
        err.contains("namespace `file`, not `airlock-plugin`"),
        "{err}"
    );
}

/// What `plugin sign --key` makes of keys ssh-keygen made: ECDSA P-256
/// and P-384 signatures OpenSSH itself accepts; an encrypted key and an
/// RSA key refused with what to do instead.
fn ssh_keygen_keys(k: &Path, d: &Path) {
    for bits in ["256", "384"] {
        let key = k.join(format!("id_ecdsa_{bits}"));
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ecdsa", "-b", bits, "-N", "", "-f"])
            .arg(&key));
        let plugin = write(k, &format!("ecdsa{bits}.wasm"), &minimal());
        let args = ["plugin", "sign", &plugin, "--key", key.to_str().unwrap()];
        let (code, out, err) = airlock_in(d, &args, &[]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("(ecdsa-sha2-nistp{bits})")), "{out}");
        let signed = std::fs::read(&plugin).unwrap();
        let file = signing::read(&signed).unwrap();
        let sig = write(k, "ecdsa.sig", file.signature.unwrap().armored.as_bytes());
        let message = std::fs::File::open(write(k, "ecdsa.msg", file.message)).unwrap();
        run(Command::new("ssh-keygen")
            .args(["-Y", "check-novalidate", "-n", "airlock-plugin", "-s", &sig])
            .stdin(message));
    }
    let plugin = write(k, "plugin2.wasm", &minimal());
    keygen(&k.join("locked"), "ed25519", "a passphrase");
    let locked = k.join("locked");
    let err = fails_in(
        d,
        &["plugin", "sign", &plugin, "--key", locked.to_str().unwrap()],
        1,
    );
    assert!(err.contains("encrypted with a passphrase"), "{err}");
    assert!(
        err.contains("ssh-keygen -Y sign -n airlock-plugin"),
        "{err}"
    );
    assert!(err.contains("--signature"), "{err}");

    keygen(&k.join("id_rsa"), "rsa", "");
    let rsa = k.join("id_rsa");
    let err = fails_in(
        d,
        &["plugin", "sign", &plugin, "--key", rsa.to_str().unwrap()],
        1,
    );
    assert!(
        err.contains("ssh-rsa, which airlock does not accept"),
        "{err}"
    );
}
