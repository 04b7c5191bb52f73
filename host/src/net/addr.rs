//! The address filter applied after DNS: only globally routable addresses,
//! unless the operator allowed a range explicitly.
//!
//! IPv6 forms that embed an IPv4 address (mapped, compatible, NAT64, 6to4) are
//! judged by the address they embed, so `::ffff:169.254.169.254` is refused
//! like `169.254.169.254`; a 6to4 address is refused even when the address it
//! embeds is public (it is routed through a relay), unless allowed.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Environment variable with comma-separated CIDRs the operator allows even
/// though they are not globally routable (e.g. `127.0.0.0/8` for local dev).
pub const ALLOW_PRIVATE_ENV: &str = "AIRLOCK_EGRESS_ALLOW_PRIVATE";

/// Which addresses outbound connections may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    allowed: Vec<IpNet>,
}

/// An address the filter refused, with the range that caught it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "address {ip} is {class}, which plugins may not reach (allow it explicitly with {ALLOW_PRIVATE_ENV})"
)]
pub struct AddressDenied {
    /// The refused address, as resolved.
    pub ip: IpAddr,
    /// What kind of address it is (`loopback`, `private (10.0.0.0/8)`, ...).
    pub class: &'static str,
}

/// An [`ALLOW_PRIVATE_ENV`] entry that is neither a CIDR nor an IP address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {ALLOW_PRIVATE_ENV} entry {entry:?}: expected a CIDR like 127.0.0.0/8 or ::1/128")]
pub struct AllowListError {
    /// The entry as written (trimmed).
    pub entry: String,
}

impl AddressPolicy {
    /// Only globally routable addresses.
    pub fn global_only() -> Self {
        Self::default()
    }

    /// Also allow these ranges.
    pub fn allowing(ranges: impl IntoIterator<Item = IpNet>) -> Self {
        Self {
            allowed: ranges.into_iter().collect(),
        }
    }

    /// Parse a comma-separated CIDR list; a bare address counts as a single host.
    pub fn parse_allow_list(list: &str) -> Result<Self, AllowListError> {
        let mut allowed = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let net = IpNet::from_str(entry)
                .or_else(|_| IpAddr::from_str(entry).map(IpNet::from))
                .map_err(|_| AllowListError {
                    entry: entry.to_string(),
                })?;
            allowed.push(net);
        }
        Ok(Self { allowed })
    }

    /// From [`ALLOW_PRIVATE_ENV`], or global-only when it is unset.
    pub fn from_env() -> Result<Self, AllowListError> {
        match std::env::var(ALLOW_PRIVATE_ENV) {
            Ok(list) => Self::parse_allow_list(&list),
            Err(_) => Ok(Self::global_only()),
        }
    }

    /// Ranges allowed beyond the global internet (printed at start-up).
    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Whether `ip` may be reached: an allowed range admits it (matching the
    /// address or the IPv4 address it embeds); otherwise it must be globally
    /// routable.
    pub fn check(&self, ip: IpAddr) -> Result<(), AddressDenied> {
        let effective = embedded_v4(ip).map(IpAddr::V4).unwrap_or(ip);
        if self
            .allowed
            .iter()
            .any(|net| net.contains(&ip) || net.contains(&effective))
        {
            return Ok(());
        }
        match non_global_class(ip) {
            Some(class) => Err(AddressDenied { ip, class }),
            None => Ok(()),
        }
    }
}

impl fmt::Display for AddressPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.allowed.is_empty() {
            f.write_str("global addresses only")
        } else {
            let list: Vec<String> = self.allowed.iter().map(ToString::to_string).collect();
            write!(f, "global addresses plus {}", list.join(", "))
        }
    }
}

/// The IPv4 address an IPv6 address stands for, in the forms that embed one.
fn embedded_v4(ip: IpAddr) -> Option<Ipv4Addr> {
    let IpAddr::V6(v6) = ip else { return None };
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped)
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        // ::a.b.c.d (compatible, deprecated); :: and ::1 are handled as IPv6
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 2002:aabb:ccdd::/48 (6to4)
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

fn non_global_class(ip: IpAddr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return v4_class(v4).or(match ip {
            // A 6to4 or NAT64 form of a public address is still routed
            // through a translator we know nothing about.
            IpAddr::V6(v6) if v6.segments()[0] == 0x2002 => Some("a 6to4 address"),
            _ => None,
        });
    }
    match ip {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "in 0.0.0.0/8 (this network)",
        (127, ..) => "loopback",
        (10, ..) => "private (10.0.0.0/8)",
        (172, 16..=31, _) => "private (172.16.0.0/12)",
        (192, 168, _) => "private (192.168.0.0/16)",
        (169, 254, _) => "link-local (169.254.0.0/16, incl. cloud metadata)",
        (100, 64..=127, _) => "carrier-grade NAT (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (192, 88, 99) => "6to4 relay anycast",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved (240.0.0.0/4)",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    Some(match s {
        [0, 0, 0, 0, 0, 0, 0, 0] => "unspecified",
        [0, 0, 0, 0, 0, 0, 0, 1] => "loopback",
        [0x64, 0xff9b, 1, ..] => "local-use NAT64 (64:ff9b:1::/48)",
        [0x100, 0, 0, 0, ..] => "discard-only (100::/64)",
        [0x2001, 0x0db8, ..] => "documentation (2001:db8::/32)",
        [0x2001, b, ..] if b < 0x200 => "IETF protocol assignments incl. Teredo (2001::/23)",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique local (fc00::/7)",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local (fe80::/10)",
        [a, ..] if a & 0xffc0 == 0xfec0 => "site-local (fec0::/10)",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast",
        [0, ..] => "reserved (::/8)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn denied(s: &str) -> bool {
        AddressPolicy::global_only()
            .check(s.parse().unwrap())
            .is_err()
    }

    #[test]
    fn refuses_every_non_global_form() {
        for ip in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "2001::1",
        ] {
            assert!(denied(ip), "{ip} should be refused");
        }
    }

    #[test]
    fn allows_global_addresses() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "64:ff9b::808:808",
        ] {
            assert!(!denied(ip), "{ip} should be allowed");
        }
    }

    #[test]
    fn operator_ranges_are_explicit() {
        let p = AddressPolicy::parse_allow_list("127.0.0.0/8, ::1").unwrap();
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("::1".parse().unwrap()).is_ok());
        assert!(p.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(p.check("169.254.169.254".parse().unwrap()).is_err());
        let err = AddressPolicy::parse_allow_list("127.0.0.0/8,localhost").unwrap_err();
        assert!(err.to_string().contains("localhost"));
    }

    #[test]
    fn denial_names_the_class_and_the_fix() {
        let err = AddressPolicy::global_only()
            .check("169.254.169.254".parse().unwrap())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("link-local") && msg.contains(ALLOW_PRIVATE_ENV),
            "{msg}"
        );
    }
}
