//! Which IP addresses are not public destinations, and why: a pure table-driven classifier.
//!
//! The tables follow the IANA special-purpose address registries (RFC 6890 and its updates).
//! IPv6 addresses that carry an IPv4 address inside them (IPv4-mapped, IPv4-compatible, NAT64,
//! 6to4) are classified by the IPv4 address they lead to, so `::ffff:169.254.169.254` is the
//! metadata endpoint and not "some IPv6 address".

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused as a destination: the special-purpose class it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Blocked {
    /// `0.0.0.0` or `::`. Connecting to it reaches the local host on Linux.
    Unspecified,
    /// `0.0.0.0/8`, "this network" (RFC 1122 section 3.2.1.3).
    ThisNetwork,
    /// `127.0.0.0/8` or `::1` (RFC 1122, RFC 4291).
    Loopback,
    /// `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16` (RFC 1918), or the local-use NAT64
    /// prefix `64:ff9b:1::/48` (RFC 8215).
    Private,
    /// `100.64.0.0/10`, carrier-grade NAT space (RFC 6598).
    SharedAddress,
    /// `169.254.0.0/16` (RFC 3927) or `fe80::/10` (RFC 4291). Cloud metadata services such as
    /// `169.254.169.254` live here.
    LinkLocal,
    /// `fc00::/7`, unique local IPv6 (RFC 4193).
    UniqueLocal,
    /// `fec0::/10`, the deprecated IPv6 site-local range (RFC 3879).
    SiteLocal,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`, limited broadcast (RFC 919).
    Broadcast,
    /// `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24` (RFC 5737), `2001:db8::/32`
    /// (RFC 3849) or `3fff::/20` (RFC 9637).
    Documentation,
    /// `198.18.0.0/15` (RFC 2544) or `2001:2::/48` (RFC 5180).
    Benchmarking,
    /// `192.0.0.0/24` or `2001::/23`, IETF protocol assignments (RFC 6890).
    ProtocolAssignment,
    /// `2001::/32`, Teredo (RFC 4380): a tunnel that can lead to any IPv4 address, including
    /// private ones, so it is refused as a whole.
    Teredo,
    /// Reserved or unassigned space: `240.0.0.0/4` (RFC 1112), the retired 6to4 relay anycast
    /// `192.88.99.0/24` (RFC 7526), the IPv6 discard prefix `100::/64` (RFC 6666), ORCHID
    /// (RFC 4843, RFC 7343), IPv4-compatible IPv6 (deprecated by RFC 4291), and every IPv6
    /// address outside global unicast `2000::/3`.
    Reserved,
}

impl Blocked {
    /// Every class, in declaration order.
    pub const ALL: &'static [Blocked] = &[
        Blocked::Unspecified,
        Blocked::ThisNetwork,
        Blocked::Loopback,
        Blocked::Private,
        Blocked::SharedAddress,
        Blocked::LinkLocal,
        Blocked::UniqueLocal,
        Blocked::SiteLocal,
        Blocked::Multicast,
        Blocked::Broadcast,
        Blocked::Documentation,
        Blocked::Benchmarking,
        Blocked::ProtocolAssignment,
        Blocked::Teredo,
        Blocked::Reserved,
    ];

    /// A stable snake_case code for logs and API answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Blocked::Unspecified => "unspecified",
            Blocked::ThisNetwork => "this_network",
            Blocked::Loopback => "loopback",
            Blocked::Private => "private",
            Blocked::SharedAddress => "shared_address",
            Blocked::LinkLocal => "link_local",
            Blocked::UniqueLocal => "unique_local",
            Blocked::SiteLocal => "site_local",
            Blocked::Multicast => "multicast",
            Blocked::Broadcast => "broadcast",
            Blocked::Documentation => "documentation",
            Blocked::Benchmarking => "benchmarking",
            Blocked::ProtocolAssignment => "protocol_assignment",
            Blocked::Teredo => "teredo",
            Blocked::Reserved => "reserved",
        }
    }

    /// Whether no allowlist entry can permit this class.
    ///
    /// These are never the address of an HTTP server: the unspecified address and "this
    /// network" reach the local host in ways an operator would not mean to allow, and multicast
    /// and broadcast are not unicast at all. An operator who writes `0.0.0.0/0` still does not
    /// get them.
    pub fn is_absolute(self) -> bool {
        matches!(
            self,
            Blocked::Unspecified | Blocked::ThisNetwork | Blocked::Multicast | Blocked::Broadcast
        )
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Blocked::Unspecified => "unspecified address",
            Blocked::ThisNetwork => "\"this network\" address (0.0.0.0/8)",
            Blocked::Loopback => "loopback address",
            Blocked::Private => "private address",
            Blocked::SharedAddress => "shared address space (100.64.0.0/10, carrier-grade NAT)",
            Blocked::LinkLocal => "link-local address (cloud metadata endpoints live here)",
            Blocked::UniqueLocal => "unique local IPv6 address (fc00::/7)",
            Blocked::SiteLocal => "site-local IPv6 address (fec0::/10)",
            Blocked::Multicast => "multicast address",
            Blocked::Broadcast => "broadcast address",
            Blocked::Documentation => "documentation address",
            Blocked::Benchmarking => "benchmarking address",
            Blocked::ProtocolAssignment => "IETF protocol assignment address",
            Blocked::Teredo => "Teredo tunnel address (2001::/32)",
            Blocked::Reserved => "reserved address",
        })
    }
}

/// The special-purpose class of `ip`, or `None` for an ordinary public address.
///
/// This is the whole rule; the allowlist in [`crate::Destinations`] decides which classes an
/// operator has opened up.
pub fn classify(ip: IpAddr) -> Option<Blocked> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// IPv4 rules, most specific first; the first match wins.
const V4_RULES: &[(u32, u8, Blocked)] = &[
    (0xffff_ffff, 32, Blocked::Broadcast),     // 255.255.255.255/32
    (0x0000_0000, 32, Blocked::Unspecified),   // 0.0.0.0/32
    (0x0000_0000, 8, Blocked::ThisNetwork),    // 0.0.0.0/8
    (0x7f00_0000, 8, Blocked::Loopback),       // 127.0.0.0/8
    (0x0a00_0000, 8, Blocked::Private),        // 10.0.0.0/8
    (0xac10_0000, 12, Blocked::Private),       // 172.16.0.0/12
    (0xc0a8_0000, 16, Blocked::Private),       // 192.168.0.0/16
    (0x6440_0000, 10, Blocked::SharedAddress), // 100.64.0.0/10
    (0xa9fe_0000, 16, Blocked::LinkLocal),     // 169.254.0.0/16
    (0xc000_0200, 24, Blocked::Documentation), // 192.0.2.0/24
    (0xc633_6400, 24, Blocked::Documentation), // 198.51.100.0/24
    (0xcb00_7100, 24, Blocked::Documentation), // 203.0.113.0/24
    (0xc000_0000, 24, Blocked::ProtocolAssignment), // 192.0.0.0/24
    (0xc612_0000, 15, Blocked::Benchmarking),  // 198.18.0.0/15
    (0xc058_6300, 24, Blocked::Reserved),      // 192.88.99.0/24
    (0xe000_0000, 4, Blocked::Multicast),      // 224.0.0.0/4
    (0xf000_0000, 4, Blocked::Reserved),       // 240.0.0.0/4
];

fn classify_v4(ip: Ipv4Addr) -> Option<Blocked> {
    let bits = u32::from(ip);
    V4_RULES
        .iter()
        .find(|(net, prefix, _)| prefix_matches_v4(bits, *net, *prefix))
        .map(|(_, _, class)| *class)
}

/// IPv6 rules that need no look inside the address, most specific first. The prefixes that
/// embed an IPv4 address are handled in [`classify_v6`] before these.
const V6_RULES: &[(u128, u8, Blocked)] = &[
    (0x0064_ff9b_0001 << 80, 48, Blocked::Private), // 64:ff9b:1::/48, local-use NAT64
    (0x0100 << 112, 64, Blocked::Reserved),         // 100::/64, discard-only
    (0x2001_0000 << 96, 32, Blocked::Teredo),       // 2001::/32
    (0x2001_0002 << 96, 48, Blocked::Benchmarking), // 2001:2::/48
    (0x2001_0db8 << 96, 32, Blocked::Documentation), // 2001:db8::/32
    (0x2001_0010 << 96, 28, Blocked::Reserved),     // 2001:10::/28, ORCHID
    (0x2001_0020 << 96, 28, Blocked::Reserved),     // 2001:20::/28, ORCHIDv2
    (0x2001_0000 << 96, 23, Blocked::ProtocolAssignment), // 2001::/23
    (0x3fff << 112, 20, Blocked::Documentation),    // 3fff::/20
    (0xfc00 << 112, 7, Blocked::UniqueLocal),       // fc00::/7
    (0xfe80 << 112, 10, Blocked::LinkLocal),        // fe80::/10
    (0xfec0 << 112, 10, Blocked::SiteLocal),        // fec0::/10
    (0xff00 << 112, 8, Blocked::Multicast),         // ff00::/8
];

fn classify_v6(ip: Ipv6Addr) -> Option<Blocked> {
    let bits = u128::from(ip);
    if bits == 0 {
        return Some(Blocked::Unspecified);
    }
    if bits == 1 {
        return Some(Blocked::Loopback);
    }
    // The last 32 bits, for the prefixes that end in an IPv4 address.
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // ::ffff:0:0/96, IPv4-mapped (RFC 4291 section 2.5.5.2): a dual-stack socket connects to
    // the IPv4 address itself, so it is that address in every respect.
    if prefix_matches_v6(bits, 0xffff << 32, 96) {
        return classify_v4(low_v4);
    }
    // ::/96, IPv4-compatible (RFC 4291 section 2.5.5.1, deprecated). Not routed today; named
    // after what it embeds when that is special, refused as reserved otherwise.
    if prefix_matches_v6(bits, 0, 96) {
        return Some(classify_v4(low_v4).unwrap_or(Blocked::Reserved));
    }
    // 64:ff9b::/96, the well-known NAT64 prefix (RFC 6052 section 2.1): the translator
    // connects to the embedded IPv4 address. RFC 6052 section 3.1 forbids translating to
    // non-global addresses, but a translator that does not check must not become a way in.
    if prefix_matches_v6(bits, 0x0064_ff9b << 96, 96) {
        return classify_v4(low_v4);
    }
    // 2002::/16, 6to4 (RFC 3056 section 2): bits 16..48 are the IPv4 address of the site.
    if prefix_matches_v6(bits, 0x2002 << 112, 16) {
        return classify_v4(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    if let Some((_, _, class)) = V6_RULES
        .iter()
        .find(|(net, prefix, _)| prefix_matches_v6(bits, *net, *prefix))
    {
        return Some(*class);
    }
    // Only 2000::/3 is allocated for global unicast (RFC 4291 section 2.4); everything else
    // is reserved, so no public server can be there.
    if !prefix_matches_v6(bits, 0x2000 << 112, 3) {
        return Some(Blocked::Reserved);
    }
    None
}

/// Whether `bits` lies in `net/prefix`.
pub(crate) fn prefix_matches_v4(bits: u32, net: u32, prefix: u8) -> bool {
    let mask = match prefix {
        0 => 0,
        p => u32::MAX << (32 - u32::from(p.min(32))),
    };
    bits & mask == net & mask
}

/// Whether `bits` lies in `net/prefix`.
pub(crate) fn prefix_matches_v6(bits: u128, net: u128, prefix: u8) -> bool {
    let mask = match prefix {
        0 => 0,
        p => u128::MAX << (128 - u32::from(p.min(128))),
    };
    bits & mask == net & mask
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(cases: &[(&str, Option<Blocked>)]) {
        for (text, expected) in cases {
            let ip: IpAddr = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(classify(ip), *expected, "{text}");
        }
    }

    #[test]
    fn ipv4_table() {
        use Blocked::*;
        check(&[
            ("0.0.0.0", Some(Unspecified)),
            ("0.1.2.3", Some(ThisNetwork)),
            ("0.255.255.255", Some(ThisNetwork)),
            ("127.0.0.1", Some(Loopback)),
            ("127.0.0.2", Some(Loopback)),
            ("127.255.255.254", Some(Loopback)),
            ("10.0.0.1", Some(Private)),
            ("10.255.255.255", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("172.15.255.255", None),
            ("172.32.0.0", None),
            ("192.168.1.1", Some(Private)),
            ("192.167.255.255", None),
            ("100.64.0.1", Some(SharedAddress)),
            ("100.127.255.255", Some(SharedAddress)),
            ("100.63.255.255", None),
            ("100.128.0.0", None),
            ("169.254.169.254", Some(LinkLocal)),
            ("169.254.0.1", Some(LinkLocal)),
            ("169.253.255.255", None),
            ("192.0.0.1", Some(ProtocolAssignment)),
            ("192.0.2.1", Some(Documentation)),
            ("198.51.100.7", Some(Documentation)),
            ("203.0.113.9", Some(Documentation)),
            ("198.18.0.1", Some(Benchmarking)),
            ("198.19.255.255", Some(Benchmarking)),
            ("198.20.0.0", None),
            ("192.88.99.1", Some(Reserved)),
            ("224.0.0.1", Some(Multicast)),
            ("239.255.255.250", Some(Multicast)),
            ("240.0.0.1", Some(Reserved)),
            ("255.255.255.254", Some(Reserved)),
            ("255.255.255.255", Some(Broadcast)),
            ("1.1.1.1", None),
            ("8.8.8.8", None),
            ("93.184.216.34", None),
            ("223.255.255.255", None),
        ]);
    }

    #[test]
    fn ipv6_table() {
        use Blocked::*;
        check(&[
            ("::", Some(Unspecified)),
            ("::1", Some(Loopback)),
            ("fe80::1", Some(LinkLocal)),
            ("febf::1", Some(LinkLocal)),
            ("fec0::1", Some(SiteLocal)),
            ("fc00::1", Some(UniqueLocal)),
            ("fd00::1", Some(UniqueLocal)),
            ("fd12:3456:789a::1", Some(UniqueLocal)),
            ("ff02::1", Some(Multicast)),
            ("ff05::1:3", Some(Multicast)),
            ("2001:db8::1", Some(Documentation)),
            ("3fff::1", Some(Documentation)),
            ("2001:2::1", Some(Benchmarking)),
            ("2001::1", Some(Teredo)),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Some(Teredo)),
            ("2001:10::1", Some(Reserved)),
            ("2001:20::1", Some(Reserved)),
            ("2001:3::1", Some(ProtocolAssignment)),
            ("100::1", Some(Reserved)),
            ("64:ff9b:1::a00:1", Some(Private)),
            ("5f00::1", Some(Reserved)),
            ("4000::1", Some(Reserved)),
            ("1000::1", Some(Reserved)),
            ("2606:4700:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("2a00:1450:4001::1", None),
        ]);
    }

    #[test]
    fn ipv6_embedding_ipv4_is_judged_by_the_ipv4_address() {
        use Blocked::*;
        check(&[
            // IPv4-mapped (RFC 4291 section 2.5.5.2).
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.0.0.1", Some(Private)),
            ("::ffff:192.168.1.1", Some(Private)),
            ("::ffff:100.64.0.1", Some(SharedAddress)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:224.0.0.1", Some(Multicast)),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible (deprecated): special when the embedded address is, else reserved.
            ("::127.0.0.1", Some(Loopback)),
            ("::169.254.169.254", Some(LinkLocal)),
            ("::10.0.0.1", Some(Private)),
            ("::8.8.8.8", Some(Reserved)),
            // NAT64 well-known prefix (RFC 6052).
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::10.1.2.3", Some(Private)),
            ("64:ff9b::8.8.8.8", None),
            // 6to4 (RFC 3056): the IPv4 address sits in bits 16..48.
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:a9fe:a9fe::1", Some(LinkLocal)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:0a00:0001::1", Some(Private)),
            ("2002:808:808::1", None),
        ]);
    }

    #[test]
    fn every_class_has_a_distinct_code_and_a_description() {
        let mut codes: Vec<_> = Blocked::ALL.iter().map(|c| c.as_str()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), Blocked::ALL.len());
        for class in Blocked::ALL {
            assert!(!class.to_string().is_empty());
        }
    }

    #[test]
    fn absolute_classes() {
        let absolute: Vec<_> = Blocked::ALL.iter().filter(|c| c.is_absolute()).collect();
        assert_eq!(
            absolute,
            [
                &Blocked::Unspecified,
                &Blocked::ThisNetwork,
                &Blocked::Multicast,
                &Blocked::Broadcast
            ]
        );
    }

    #[test]
    fn prefix_edges() {
        assert!(prefix_matches_v4(0x0a00_0001, 0, 0));
        assert!(prefix_matches_v4(0x0a00_0001, 0x0a00_0001, 32));
        assert!(!prefix_matches_v4(0x0a00_0002, 0x0a00_0001, 32));
        assert!(prefix_matches_v6(5, 0, 0));
        assert!(prefix_matches_v6(5, 5, 128));
        assert!(!prefix_matches_v6(4, 5, 128));
    }
}
