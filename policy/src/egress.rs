//! Egress: which host and port an agent may reach, and what an address really is.
//!
//! Host names are canonicalised once (lowercase, one trailing dot dropped) and matched exactly
//! against `sandbox.network_egress`: no suffix or prefix matching, so `connect.1password.com.evil`
//! and `evilconnect.1password.com` are different hosts. An entry without a port allows 443 and
//! 80; `host:port` allows that port only. Addresses are judged by what they are, including IPv4
//! hidden in IPv6 (mapped, compatible, 6to4, NAT64 well-known and local-use, Teredo) and IPv4
//! literals in every spelling `inet_aton` accepts (`2130706433`, `0177.0.0.1`, `0x7f.1`,
//! `127.1`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::contract::Sandbox;
use crate::evaluate::Decision;

/// Canonicalises a host name: lowercase ASCII, one trailing dot dropped. Non-ASCII (IDN) and
/// empty labels are refused: an agent must spell the host as the contract does.
pub fn canonical_host(host: &str) -> Result<String, String> {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() {
        return Err("empty host".into());
    }
    if !host.is_ascii() {
        return Err(format!(
            "non-ASCII host {host:?}: use its ASCII (punycode) form"
        ));
    }
    let host = host.to_ascii_lowercase();
    if host.split('.').any(str::is_empty) {
        return Err(format!("host {host:?} has an empty label"));
    }
    Ok(host)
}

/// Whether the sandbox lets the agent reach `host:port`.
pub fn check_egress(sandbox: &Sandbox, host: &str, port: u16) -> Decision {
    let deny = |reason: String| Decision::Deny {
        rule: "network_egress".into(),
        reason,
    };
    let host = match canonical_host(host) {
        Ok(host) => host,
        Err(reason) => return deny(reason),
    };
    let allowed = sandbox.network_egress.iter().any(|entry| {
        // Entries are canonicalised like the host, so `Connect.1Password.com.` in a
        // contract means what its author meant; an entry that does not canonicalise
        // matches nothing.
        let (name, ports) = match entry.rsplit_once(':') {
            Some((name, p)) => (name, p.parse::<u16>().ok().map(|p| [p, p])),
            None => (entry.as_str(), Some([443, 80])),
        };
        ports.is_some_and(|ports| ports.contains(&port))
            && canonical_host(name).is_ok_and(|name| name == host)
    });
    if allowed {
        Decision::Allow {
            rule: "network_egress".into(),
        }
    } else {
        deny(format!("{host}:{port} is not in network_egress"))
    }
}

/// What kind of address an IP is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum AddrClass {
    /// Routable on the internet.
    Public,
    /// 127/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, fc00::/7.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10 (carrier-grade NAT).
    SharedCgnat,
    /// 224/4, ff00::/8.
    Multicast,
    /// 0.0.0.0/8, ::.
    Unspecified,
    /// 255.255.255.255.
    Broadcast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32.
    Documentation,
    /// Cloud metadata endpoints (169.254.169.254, fd00:ec2::254).
    Metadata,
    /// Other reserved ranges (240/4, 192.0.0/24, 198.18/15, 100::/64).
    Reserved,
}

impl AddrClass {
    /// Only public addresses may be dialled for an agent.
    pub fn is_public(self) -> bool {
        self == AddrClass::Public
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddrClass::Public => "public",
            AddrClass::Loopback => "loopback",
            AddrClass::Private => "private",
            AddrClass::LinkLocal => "link-local",
            AddrClass::SharedCgnat => "carrier-grade NAT",
            AddrClass::Multicast => "multicast",
            AddrClass::Unspecified => "unspecified",
            AddrClass::Broadcast => "broadcast",
            AddrClass::Documentation => "documentation",
            AddrClass::Metadata => "cloud metadata",
            AddrClass::Reserved => "reserved",
        })
    }
}

/// Classifies an address by what it really is.
pub fn classify_ip(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let [a, b, c, _] = ip.octets();
    match (a, b, c) {
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => AddrClass::Metadata,
        _ if ip.is_broadcast() => AddrClass::Broadcast,
        (0, _, _) => AddrClass::Unspecified,
        (127, _, _) => AddrClass::Loopback,
        (10, _, _) | (172, 16..=31, _) | (192, 168, _) => AddrClass::Private,
        (169, 254, _) => AddrClass::LinkLocal,
        (100, 64..=127, _) => AddrClass::SharedCgnat,
        (224..=239, _, _) => AddrClass::Multicast,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddrClass::Documentation,
        (240..=255, _, _) | (192, 0, 0) | (198, 18..=19, _) => AddrClass::Reserved,
        _ => AddrClass::Public,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    // 64:ff9b:1::/48 (local-use NAT64, RFC 8215): the operator chooses the prefix length
    // (/48 to /96), and with it where the IPv4 address sits (RFC 6052 §2.2), so the same
    // address can reach a public host under one configuration and a private one under another.
    // Judged by the /96 reading when that alone is not public; otherwise it cannot be known
    // what the address reaches, and it is not dialled.
    if s[..3] == [0x64, 0xff9b, 1] {
        let class = classify_v4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
        return if class.is_public() {
            AddrClass::Reserved
        } else {
            class
        };
    }
    match s[0] {
        0xfd00 if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => AddrClass::Metadata,
        0xfc00..=0xfdff => AddrClass::Private,
        0xfe80..=0xfebf => AddrClass::LinkLocal,
        0xff00..=0xffff => AddrClass::Multicast,
        0x2001 if s[1] == 0x0db8 => AddrClass::Documentation,
        0x0100 if s[1..4] == [0, 0, 0] => AddrClass::Reserved,
        0x2000..=0x3fff => AddrClass::Public,
        _ => AddrClass::Reserved,
    }
}

/// The IPv4 address an IPv6 address carries, for every embedding a route can reach.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated).
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix, /96 only). The rest of 64:ff9b::/32 is
        // the local-use prefix (see classify_v6) or unassigned (reserved).
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => Some(tail(hi, lo)),
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, hi, lo, ..] => Some(tail(hi, lo)),
        // 2001:0::/32 (Teredo): the client address is the last 32 bits, inverted.
        [0x2001, 0, _, _, _, _, hi, lo] => {
            Some(Ipv4Addr::from(!((u32::from(hi) << 16) | u32::from(lo))))
        }
        _ => None,
    }
}

/// Reads `host` as an IP literal if it is one, in any spelling agents try.
///
/// `None`: a host name. `Some(Err)`: something that looks like a literal but is malformed or
/// carries a zone id — refused rather than resolved as a name.
pub fn parse_ip_literal(host: &str) -> Option<Result<IpAddr, String>> {
    if let Some(inner) = host.strip_prefix('[') {
        let Some(inner) = inner.strip_suffix(']') else {
            return Some(Err(format!("unterminated IPv6 literal {host:?}")));
        };
        if inner.contains('%') {
            return Some(Err("IPv6 zone ids are not allowed".into()));
        }
        return Some(
            inner
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| format!("malformed IPv6 literal {host:?}")),
        );
    }
    if host.contains(':') {
        return Some(
            host.parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| format!("malformed IPv6 literal {host:?}")),
        );
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let numeric = |label: &str| {
        let l = label.to_ascii_lowercase();
        match l.strip_prefix("0x") {
            Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
            None => !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    // A name whose last label is numeric can only be an address (no TLD is numeric).
    let last = host.rsplit('.').next().unwrap_or(host);
    if !numeric(last) {
        return None;
    }
    Some(
        inet_aton(host)
            .map(IpAddr::V4)
            .ok_or_else(|| format!("malformed IPv4 literal {host:?}")),
    )
}

/// BSD `inet_aton`: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last part
/// fills the remaining bytes.
fn inet_aton(text: &str) -> Option<Ipv4Addr> {
    let parts: Vec<u64> = text.split('.').map(parse_part).collect::<Option<_>>()?;
    let (last, head) = parts.split_last()?;
    if head.len() > 3 || head.iter().any(|p| *p > 255) {
        return None;
    }
    let last_bits = 8 * (4 - head.len() as u32);
    if *last >= 1u64 << last_bits {
        return None;
    }
    let mut value: u64 = 0;
    for (i, part) in head.iter().enumerate() {
        value |= part << (24 - 8 * i as u32);
    }
    Some(Ipv4Addr::from((value | last) as u32))
}

fn parse_part(part: &str) -> Option<u64> {
    let lower = part.to_ascii_lowercase();
    let (digits, radix) = if let Some(hex) = lower.strip_prefix("0x") {
        (hex.to_owned(), 16)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (lower[1..].to_owned(), 8)
    } else {
        (lower, 10)
    };
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(&digits, radix)
        .ok()
        .filter(|v| *v <= u64::from(u32::MAX))
}

#[cfg(test)]
mod tests;
