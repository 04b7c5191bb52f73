//! Where a credential may travel without TLS: never over plain http, except
//! to a loopback host (local development, a sidecar) or an origin the
//! operator names explicitly.

use super::Origin;

/// Environment variable with comma-separated origins (e.g.
/// `http://intranet.example:8080`) that may receive a credential over plain
/// http although they are not loopback.
pub const CLEARTEXT_CREDENTIALS_ENV: &str = "AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS";

/// Whether a credential may be sent to `origin`: always over https; over
/// http only to a loopback host (`localhost`, `127.0.0.0/8`, `::1`) or an
/// origin in `allowed`.
pub fn may_carry_credential(origin: &Origin, allowed: &[Origin]) -> bool {
    origin.scheme() == super::Scheme::Https
        || origin.host() == "localhost"
        || origin.ip().is_some_and(|ip| ip.is_loopback())
        || allowed.contains(origin)
}

/// Parse the operator's list (`AIRLOCK_CLEARTEXT_CREDENTIAL_ORIGINS`
/// syntax): comma-separated http(s) URLs, of which only the origin counts.
pub fn parse_cleartext_origins(list: &str) -> Result<Vec<Origin>, super::RuleError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Origin::parse)
        .collect()
}

/// The refusal's advice: what to change so the credential can be sent.
pub fn cleartext_advice(origin: &Origin) -> String {
    format!(
        "use an https base-url, or, if {origin} is trusted to receive it in clear text, \
         let the operator allow it with {CLEARTEXT_CREDENTIALS_ENV}={origin}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_travel_in_clear_only_to_loopback_or_named_origins() {
        let o = |u: &str| Origin::parse(u).unwrap();
        let none: &[Origin] = &[];
        assert!(may_carry_credential(&o("https://api.example.com"), none));
        assert!(!may_carry_credential(&o("http://api.example.com"), none));
        assert!(!may_carry_credential(&o("http://10.0.0.5"), none));
        for local in [
            "http://localhost:8080",
            "http://127.0.0.1:9",
            "http://127.8.0.1",
            "http://[::1]:80",
        ] {
            assert!(may_carry_credential(&o(local), none), "{local}");
        }
        let allowed = parse_cleartext_origins(" http://intranet.example:8080/x ,").unwrap();
        assert!(may_carry_credential(
            &o("http://intranet.example:8080"),
            &allowed
        ));
        assert!(
            !may_carry_credential(&o("http://intranet.example"), &allowed),
            "other port"
        );
        assert!(parse_cleartext_origins("ftp://x").is_err());
        assert!(cleartext_advice(&o("http://a.example")).contains(CLEARTEXT_CREDENTIALS_ENV));
    }
}
