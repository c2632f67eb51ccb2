use super::*;
use crate::contract::Contract;

const SEED: &[u8] = include_bytes!("../../../examples/policies/1password-readonly-agent.json");

fn sandbox() -> Sandbox {
    let mut sandbox = Contract::from_slice(SEED)
        .unwrap()
        .document()
        .sandbox
        .clone();
    sandbox.network_egress.push("api.github.com:8443".into());
    sandbox.network_egress.push("Upload.Example.ORG.".into());
    sandbox.network_egress.push("bad..example.org".into());
    sandbox
}

#[test]
fn hosts_match_exactly_with_the_right_ports() {
    let s = sandbox();
    let cases: &[(&str, u16, bool)] = &[
        ("connect.1password.com", 443, true),
        ("connect.1password.com", 80, true),
        ("CONNECT.1Password.COM", 443, true),
        ("connect.1password.com.", 443, true),
        ("connect.1password.com", 8080, false),
        ("connect.1password.com.evil", 443, false),
        ("evilconnect.1password.com", 443, false),
        ("x.connect.1password.com", 443, false),
        ("1password.com", 443, false),
        ("connect.1password.com..", 443, false),
        ("conn\u{435}ct.1password.com", 443, false),
        ("api.github.com", 8443, true),
        ("api.github.com", 443, false),
        ("", 443, false),
        ("upload.example.org", 80, true),
        ("bad..example.org", 443, false),
        ("api.github.com", 0, false),
    ];
    for (host, port, allow) in cases {
        let d = check_egress(&s, host, *port);
        assert_eq!(d.is_allow(), *allow, "{host}:{port}");
        assert_eq!(d.rule(), "network_egress");
    }
}

#[test]
fn addresses_are_judged_by_what_they_are() {
    let cases: &[(&str, AddrClass)] = &[
        ("8.8.8.8", AddrClass::Public),
        ("127.0.0.1", AddrClass::Loopback),
        ("127.255.0.9", AddrClass::Loopback),
        ("10.1.2.3", AddrClass::Private),
        ("172.16.0.1", AddrClass::Private),
        ("172.31.255.255", AddrClass::Private),
        ("172.32.0.1", AddrClass::Public),
        ("192.168.1.1", AddrClass::Private),
        ("169.254.169.254", AddrClass::Metadata),
        ("169.254.1.1", AddrClass::LinkLocal),
        ("100.64.0.1", AddrClass::SharedCgnat),
        ("100.128.0.1", AddrClass::Public),
        ("224.0.0.1", AddrClass::Multicast),
        ("0.0.0.0", AddrClass::Unspecified),
        ("255.255.255.255", AddrClass::Broadcast),
        ("192.0.2.1", AddrClass::Documentation),
        ("240.0.0.1", AddrClass::Reserved),
        ("::1", AddrClass::Loopback),
        ("::", AddrClass::Unspecified),
        ("::ffff:127.0.0.1", AddrClass::Loopback),
        ("::ffff:169.254.169.254", AddrClass::Metadata),
        ("::127.0.0.1", AddrClass::Loopback),
        ("64:ff9b::10.0.0.1", AddrClass::Private),
        ("64:ff9b:1::a9fe:a9fe", AddrClass::Metadata),
        ("2002:7f00:1::", AddrClass::Loopback),
        ("2002:0808:0808::", AddrClass::Public),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", AddrClass::Loopback),
        ("fc00::1", AddrClass::Private),
        ("fd00:ec2::254", AddrClass::Metadata),
        ("fe80::1", AddrClass::LinkLocal),
        ("ff02::1", AddrClass::Multicast),
        ("2001:db8::1", AddrClass::Documentation),
        ("2606:4700::1111", AddrClass::Public),
    ];
    for (text, want) in cases {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(classify_ip(ip), *want, "{text}");
    }
}

#[test]
fn ip_literals_in_every_spelling() {
    let loopback = Some(Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cases: &[(&str, Option<Result<IpAddr, String>>)] = &[
        ("127.0.0.1", loopback.clone()),
        ("2130706433", loopback.clone()),
        ("0177.0.0.1", loopback.clone()),
        ("0x7f.1", loopback.clone()),
        ("0x7F000001", loopback.clone()),
        ("127.1", loopback.clone()),
        ("127.0.1", loopback.clone()),
        ("127.0.0.1.", loopback.clone()),
        ("[::1]", Some(Ok("::1".parse().unwrap()))),
        (
            "[::ffff:7f00:1]",
            Some(Ok("::ffff:127.0.0.1".parse().unwrap())),
        ),
        ("connect.1password.com", None),
        ("1password.com", None),
        ("a.b.c.0x7f", Some(Err(String::new()))),
        ("127.0.0.256", Some(Err(String::new()))),
        ("1.2.3.4.5", Some(Err(String::new()))),
        ("0x", Some(Err(String::new()))),
        ("[fe80::1%25eth0]", Some(Err(String::new()))),
        ("[fe80::1%eth0]", Some(Err(String::new()))),
        ("[::1", Some(Err(String::new()))),
        ("::1", Some(Ok("::1".parse().unwrap()))),
        ("0x7f.0x0.0x0.0x1", loopback.clone()),
        ("017700000001", loopback.clone()),
        ("0", Some(Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)))),
        ("08.0.0.1", Some(Err(String::new()))),
        ("4294967296", Some(Err(String::new()))),
    ];
    for (host, want) in cases {
        let got = parse_ip_literal(host);
        match (want, &got) {
            (Some(Err(_)), Some(Err(_))) => {}
            _ => assert_eq!(&got, want, "{host}"),
        }
    }
}

#[test]
fn nat64_addresses_are_judged_by_every_place_a_translator_reads_ipv4_from() {
    let cases: &[(&str, AddrClass)] = &[
        // The well-known prefix is /96 only: the IPv4 address is the last 32 bits.
        ("64:ff9b::8.8.8.8", AddrClass::Public),
        ("64:ff9b::7f00:1", AddrClass::Loopback),
        ("64:ff9b::a9fe:a9fe", AddrClass::Metadata),
        // Elsewhere in 64:ff9b::/32 nothing is assigned: the last 32 bits mean nothing.
        ("64:ff9b:5::8.8.8.8", AddrClass::Reserved),
        ("64:ff9b:0:0:1::8.8.8.8", AddrClass::Reserved),
        // Local-use (64:ff9b:1::/48): a private /96 reading is named as such.
        ("64:ff9b:1::10.0.0.1", AddrClass::Private),
        ("64:ff9b:1::a9fe:a9fe", AddrClass::Metadata),
        // A public /96 reading proves nothing: under a /48 prefix 64:ff9b:1:a00:0:100::/96
        // is 10.0.0.1 (and under /64, 64:ff9b:1:0:7f:0:100:: is 127.0.0.1), whatever the
        // trailing bits say. What it reaches depends on local configuration: not dialled.
        ("64:ff9b:1:a00:0:100:808:808", AddrClass::Reserved),
        ("64:ff9b:1:0:7f:0:100:808", AddrClass::Reserved),
        ("64:ff9b:1::8.8.8.8", AddrClass::Reserved),
    ];
    for (text, want) in cases {
        let ip: IpAddr = text.parse().unwrap();
        assert_eq!(classify_ip(ip), *want, "{text}");
    }
}
