//! The signature format on a tiny hand-made file: sign, verify, attach,
//! and each way a file, key or signature is refused.

use super::*;
use ssh_key::private::Ed25519Keypair;

/// A component header and one custom section standing for the code.
fn file() -> Vec<u8> {
    section::append_custom(b"\0asm\x0d\0\x01\0", "code", b"the code and its manifest")
}

fn key(seed: u8) -> (PrivateKey, SigningKey) {
    let private = PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]));
    let text = private.to_openssh(LineEnding::LF).unwrap();
    (private, SigningKey::from_openssh(&text).unwrap())
}

/// What `ssh-keygen -Y sign -n NAMESPACE` makes of `message`.
fn armored(private: &PrivateKey, namespace: &str, message: &[u8]) -> String {
    private
        .sign(namespace, HashAlg::Sha512, message)
        .unwrap()
        .to_pem(LineEnding::LF)
        .unwrap()
}

#[test]
fn a_signed_file_verifies_and_names_its_signer() {
    let (private, key) = key(1);
    let (signed, signature) = sign(&file(), &key).unwrap();
    assert!(signed.starts_with(&file()), "the signature is appended");
    let found = verify(&signed).unwrap().expect("signed");
    assert_eq!(found.fingerprint, key.fingerprint());
    assert_eq!(found.fingerprint, signature.fingerprint);
    assert!(
        found.fingerprint.starts_with("SHA256:"),
        "{}",
        found.fingerprint
    );
    assert_eq!(
        found.fingerprint,
        private
            .public_key()
            .fingerprint(HashAlg::Sha256)
            .to_string()
    );
    assert_eq!(found.public_key, key.public_key());
    assert!(found.public_key.starts_with("ssh-ed25519 AAAA"));
    assert_eq!(found.algorithm, "ssh-ed25519");
    assert!(found.armored.starts_with("-----BEGIN SSH SIGNATURE-----"));
    assert_eq!(read(&signed).unwrap().message, file().as_slice());
    assert!(verify(&file()).unwrap().is_none(), "unsigned");
}

#[test]
fn signing_again_replaces_the_signature() {
    let (_, first) = key(1);
    let (_, second) = key(2);
    let (once, _) = sign(&file(), &first).unwrap();
    let (twice, _) = sign(&once, &second).unwrap();
    let signer = verify(&twice).unwrap().unwrap();
    assert_eq!(signer.fingerprint, second.fingerprint());
    assert_eq!(read(&twice).unwrap().message, file().as_slice());
}

#[test]
fn a_changed_byte_does_not_verify() {
    let (_, key) = key(1);
    let (mut signed, signature) = sign(&file(), &key).unwrap();
    signed[12] ^= 1;
    let err = verify(&signed).unwrap_err();
    assert_eq!(
        err,
        SignatureError::Mismatch {
            fingerprint: signature.fingerprint
        }
    );
    assert!(
        err.to_string().contains("changed after it was signed"),
        "{err}"
    );
}

#[test]
fn an_attached_signature_is_checked_before_it_is_embedded() {
    let (private, _) = key(3);
    let made = armored(&private, NAMESPACE, &file());
    let (signed, signature) = attach(&file(), &made).unwrap();
    assert_eq!(
        verify(&signed).unwrap().unwrap().fingerprint,
        signature.fingerprint
    );
    let other = armored(&private, NAMESPACE, b"another file");
    assert!(matches!(
        attach(&file(), &other),
        Err(SignatureError::Mismatch { .. })
    ));
}

#[test]
fn two_signature_sections_or_one_not_last_are_refused() {
    let (_, key) = key(1);
    let (signed, signature) = sign(&file(), &key).unwrap();
    let twice = section::append_custom(&signed, SIGNATURE_SECTION, signature.armored.as_bytes());
    let err = verify(&twice).unwrap_err();
    assert_eq!(err, SignatureError::Duplicate { count: 2 });
    assert!(err.to_string().contains("exactly one"), "{err}");

    let after = section::append_custom(&signed, "appended", b"more code");
    let err = verify(&after).unwrap_err();
    assert!(matches!(err, SignatureError::NotLast { .. }), "{err}");
    assert!(
        err.to_string().contains("not the file's last section"),
        "{err}"
    );
}

#[test]
fn garbage_and_other_namespaces_are_refused() {
    let garbage = section::append_custom(&file(), SIGNATURE_SECTION, b"\xff\xfe not text");
    assert!(matches!(
        verify(&garbage),
        Err(SignatureError::Armor { .. })
    ));
    let fake = "-----BEGIN SSH SIGNATURE-----\nbm90IGEgc2lnbmF0dXJl\n-----END SSH SIGNATURE-----\n";
    let err = verify(&section::append_custom(
        &file(),
        SIGNATURE_SECTION,
        fake.as_bytes(),
    ))
    .unwrap_err();
    assert!(matches!(err, SignatureError::Armor { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("ssh-keygen -Y sign -n airlock-plugin"),
        "{err}"
    );

    let (private, _) = key(1);
    let git = armored(&private, "git", &file());
    let err = attach(&file(), &git).unwrap_err();
    assert_eq!(
        err,
        SignatureError::Namespace {
            found: "git".into()
        }
    );
    let embedded = section::append_custom(&file(), SIGNATURE_SECTION, git.as_bytes());
    assert_eq!(verify(&embedded).unwrap_err(), err);
}

#[test]
fn publisher_keys_are_one_supported_openssh_line() {
    let (_, key) = key(4);
    let line = format!("{} alice@example", key.public_key());
    let parsed = PublisherKey::parse(&format!("  {line}\n")).unwrap();
    assert_eq!(parsed.public_key, line, "the comment is kept");
    assert_eq!(parsed.fingerprint, key.fingerprint());
    for bad in ["", "ssh-ed25519", "ssh-ed25519 AAAA!!", "hello world"] {
        let err = PublisherKey::parse(bad).unwrap_err();
        assert!(
            matches!(err, SignatureError::PublicKey { .. }),
            "{bad}: {err}"
        );
    }
    let two = format!("{line}\n{line}");
    assert!(PublisherKey::parse(&two).is_err());
    let rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAAAgQCyywqEhSD/5xlrlGiwnCp5oSPuoBTRlEGNODOl1ePXkE8WJBcnO/3EY872nOAiNNbn+FLGD2f9kWLLXOwan0vraZTruEGp0N8QYA1L1Y0s+wwmxKoeZq2vpUbPfYfr8KMZz+CFSyZEOq1q7dKUtjH6n5pvUXwt844xia+cwCME0w== old@example";
    let err = PublisherKey::parse(rsa).unwrap_err();
    assert!(matches!(err, SignatureError::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("ssh-keygen -t ed25519"), "{err}");
}

#[test]
fn private_keys_must_be_openssh_private_keys() {
    let (_, key) = key(5);
    let err = SigningKey::from_openssh(&key.public_key()).unwrap_err();
    assert!(matches!(err, SignatureError::PrivateKey { .. }), "{err}");
    assert!(err.to_string().contains("not the `.pub`"), "{err}");
    assert!(!format!("{key:?}").contains("PRIVATE"), "{key:?}");
}
