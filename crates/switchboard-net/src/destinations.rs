//! The operator's allowlist: which otherwise refused destinations this installation may reach.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::NetError;
use crate::classify::{Blocked, classify, prefix_matches_v4, prefix_matches_v6};

/// An IP address block in CIDR notation (`10.1.0.0/16`, `fd00::/8`), or one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpBlock {
    network: IpAddr,
    prefix: u8,
}

impl IpBlock {
    /// The block `network/prefix`. Host bits below the prefix are cleared, so `10.1.2.3/16`
    /// is `10.1.0.0/16`, as the configuration loader has always read it.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, NetError> {
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(NetError::Config {
                entry: format!("{network}/{prefix}"),
                reason: format!("the prefix length must be at most {max}"),
            });
        }
        let network = match network {
            IpAddr::V4(v4) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u32::MAX << (32 - u32::from(prefix))
                };
                IpAddr::V4((u32::from(v4) & mask).into())
            }
            IpAddr::V6(v6) => {
                let mask = if prefix == 0 {
                    0
                } else {
                    u128::MAX << (128 - u32::from(prefix))
                };
                IpAddr::V6((u128::from(v6) & mask).into())
            }
        };
        Ok(Self { network, prefix })
    }

    /// The block holding exactly `ip`.
    pub fn single(ip: IpAddr) -> Self {
        let prefix = if ip.is_ipv4() { 32 } else { 128 };
        Self {
            network: ip,
            prefix,
        }
    }

    /// Whether `ip` lies in the block. An IPv4 block never contains an IPv6 address, nor the
    /// other way round; [`Destinations`] handles IPv4-mapped addresses itself.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_matches_v4(u32::from(ip), u32::from(net), self.prefix)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_matches_v6(u128::from(ip), u128::from(net), self.prefix)
            }
            _ => false,
        }
    }
}

impl FromStr for IpBlock {
    type Err = NetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| NetError::Config {
            entry: s.to_owned(),
            reason: reason.to_owned(),
        };
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| bad("not an IP address in standard notation"))?;
        match prefix {
            None => Ok(Self::single(network)),
            Some(p) => {
                let prefix = p
                    .parse::<u8>()
                    .map_err(|_| bad("the prefix length is not a number"))?;
                Self::new(network, prefix).map_err(|e| match e {
                    NetError::Config { reason, .. } => bad(&reason),
                    other => other,
                })
            }
        }
    }
}

impl fmt::Display for IpBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

/// Which destinations outside the public internet this installation may reach.
///
/// By default nothing but ordinary public addresses is allowed. The operator can open up
/// loopback (for development), address blocks (`10.1.0.0/16` for an internal MCP server) and
/// exact host names (every address such a name resolves to is accepted, because the operator
/// vouches for that name). The classes for which [`Blocked::is_absolute`] holds are refused
/// whatever the allowlist says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Destinations {
    loopback: bool,
    blocks: Vec<IpBlock>,
    hosts: Vec<String>,
}

impl Destinations {
    /// Public addresses only: the safe default.
    pub fn public_only() -> Self {
        Self::default()
    }

    /// Builds the allowlist from configuration: the loopback switch and entries that are IP
    /// addresses, CIDR blocks or exact host names, the syntax of `security.allow_http_hosts`.
    pub fn from_config<I, S>(allow_loopback: bool, entries: I) -> Result<Self, NetError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Self::public_only().with_loopback(allow_loopback);
        for entry in entries {
            let entry = entry.as_ref().trim();
            let looks_like_ip = entry.contains(':')
                || entry.contains('/')
                || entry.parse::<IpAddr>().is_ok()
                || last_label_is_numeric(entry);
            out = if looks_like_ip {
                out.with_block(entry.parse()?)
            } else {
                out.with_host(entry)?
            };
        }
        Ok(out)
    }

    /// Allows or refuses loopback addresses (`127.0.0.0/8`, `::1`, `::ffff:127.0.0.0/104`).
    pub fn with_loopback(mut self, allow: bool) -> Self {
        self.loopback = allow;
        self
    }

    /// Allows every address in `block`.
    pub fn with_block(mut self, block: IpBlock) -> Self {
        if !self.blocks.contains(&block) {
            self.blocks.push(block);
        }
        self
    }

    /// Allows every address the host name `host` resolves to. The name is compared
    /// case-insensitively and without a trailing dot.
    pub fn with_host(mut self, host: &str) -> Result<Self, NetError> {
        let name = normalize_host(host);
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(valid_label) {
            return Err(NetError::Config {
                entry: host.to_owned(),
                reason: "not a host name, IP address or CIDR block".into(),
            });
        }
        if last_label_is_numeric(&name) {
            return Err(NetError::Config {
                entry: host.to_owned(),
                reason: "looks like an IP address but is not in standard notation".into(),
            });
        }
        if !self.hosts.contains(&name) {
            self.hosts.push(name);
        }
        Ok(self)
    }

    /// Whether loopback addresses are allowed.
    pub fn allows_loopback(&self) -> bool {
        self.loopback
    }

    /// The allowed address blocks.
    pub fn blocks(&self) -> &[IpBlock] {
        &self.blocks
    }

    /// The allowed host names, normalized.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Whether `ip` may be connected to, judged by the address alone (a literal in a URL).
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Blocked> {
        match classify(ip) {
            None => Ok(()),
            Some(class) if !class.is_absolute() && self.permits(ip) => Ok(()),
            Some(class) => Err(class),
        }
    }

    /// Whether `ip`, which the host name `host` resolved to, may be connected to.
    pub fn check_resolved(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        match self.check_ip(ip) {
            Ok(()) => Ok(()),
            Err(class) if !class.is_absolute() && self.permits_host(host) => Ok(()),
            Err(class) => Err(class),
        }
    }

    fn permits_host(&self, host: &str) -> bool {
        !self.hosts.is_empty() && self.hosts.contains(&normalize_host(host))
    }

    fn permits(&self, ip: IpAddr) -> bool {
        // An IPv4-mapped IPv6 address is the IPv4 address on a dual-stack socket, so an entry
        // for one covers the other. Other embeddings (NAT64, 6to4) go through a translator or
        // a tunnel and need an IPv6 entry of their own.
        let canonical = mapped_v4(ip);
        if self.loopback && canonical.is_loopback() {
            return true;
        }
        self.blocks
            .iter()
            .any(|b| b.contains(ip) || b.contains(canonical))
    }
}

/// `ip`, with an IPv4-mapped IPv6 address turned into its IPv4 address.
fn mapped_v4(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

fn normalize_host(host: &str) -> String {
    host.trim()
        .trim_end_matches('.')
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase()
}

/// Whether the last label of `name` is a number in any base, which makes the URL standard read
/// the whole name as an IPv4 address (WHATWG URL, "ends in a number checker").
fn last_label_is_numeric(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    let last = name.rsplit('.').next().unwrap_or(name);
    if last.is_empty() {
        return false;
    }
    let lower = last.to_ascii_lowercase();
    lower.bytes().all(|b| b.is_ascii_digit())
        || lower
            .strip_prefix("0x")
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn blocks_parse_and_mask() {
        let b: IpBlock = "10.1.2.3/16".parse().unwrap();
        assert_eq!(b.to_string(), "10.1.0.0/16");
        assert!(b.contains(ip("10.1.255.1")));
        assert!(!b.contains(ip("10.2.0.1")));
        assert!(!b.contains(ip("::ffff:10.1.0.1")));
        let one: IpBlock = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        let v6: IpBlock = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fc00::1")));
        let all: IpBlock = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("10.0.0.1")));
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/x",
            "nonsense",
            "",
        ] {
            let err = bad.parse::<IpBlock>().unwrap_err();
            assert!(matches!(err, NetError::Config { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn public_only_refuses_every_class() {
        let d = Destinations::public_only();
        for text in [
            "127.0.0.1",
            "10.0.0.1",
            "169.254.169.254",
            "::1",
            "fd00::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(d.check_ip(ip(text)).is_err(), "{text}");
            assert!(d.check_resolved("example.org", ip(text)).is_err(), "{text}");
        }
        assert_eq!(d.check_ip(ip("8.8.8.8")), Ok(()));
        assert_eq!(d.check_ip(ip("2606:4700:4700::1111")), Ok(()));
    }

    #[test]
    fn loopback_switch() {
        let d = Destinations::public_only().with_loopback(true);
        for text in ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"] {
            assert_eq!(d.check_ip(ip(text)), Ok(()), "{text}");
        }
        assert_eq!(d.check_ip(ip("10.0.0.1")), Err(Blocked::Private));
        assert_eq!(d.check_ip(ip("::127.0.0.1")), Err(Blocked::Loopback));
        assert_eq!(d.check_ip(ip("0.0.0.0")), Err(Blocked::Unspecified));
    }

    #[test]
    fn blocks_open_their_addresses_only() {
        let d = Destinations::from_config(false, ["127.0.0.1/32", "10.1.0.0/16", "fd00:1::/32"])
            .unwrap();
        assert_eq!(d.check_ip(ip("127.0.0.1")), Ok(()));
        assert_eq!(d.check_ip(ip("::ffff:127.0.0.1")), Ok(()));
        assert_eq!(d.check_ip(ip("127.0.0.2")), Err(Blocked::Loopback));
        assert_eq!(d.check_ip(ip("::1")), Err(Blocked::Loopback));
        assert_eq!(d.check_ip(ip("10.1.9.9")), Ok(()));
        assert_eq!(d.check_ip(ip("10.2.0.1")), Err(Blocked::Private));
        assert_eq!(d.check_ip(ip("fd00:1::5")), Ok(()));
        assert_eq!(d.check_ip(ip("fd00:2::5")), Err(Blocked::UniqueLocal));
        assert_eq!(
            d.check_ip(ip("169.254.169.254")),
            Err(Blocked::LinkLocal),
            "the metadata endpoint stays closed"
        );
    }

    #[test]
    fn absolute_classes_stay_closed_whatever_the_allowlist() {
        let d = Destinations::from_config(true, ["0.0.0.0/0", "::/0", "wide.example"]).unwrap();
        assert_eq!(d.check_ip(ip("10.0.0.1")), Ok(()));
        assert_eq!(d.check_ip(ip("169.254.169.254")), Ok(()));
        for (text, class) in [
            ("0.0.0.0", Blocked::Unspecified),
            ("0.1.2.3", Blocked::ThisNetwork),
            ("::", Blocked::Unspecified),
            ("224.0.0.1", Blocked::Multicast),
            ("ff02::1", Blocked::Multicast),
            ("255.255.255.255", Blocked::Broadcast),
            ("::ffff:0.0.0.0", Blocked::Unspecified),
        ] {
            assert_eq!(d.check_ip(ip(text)), Err(class), "{text}");
            assert_eq!(
                d.check_resolved("wide.example", ip(text)),
                Err(class),
                "{text}"
            );
        }
    }

    #[test]
    fn host_names_vouch_for_their_addresses() {
        let d = Destinations::from_config(false, ["MCP.internal."]).unwrap();
        assert_eq!(d.hosts(), ["mcp.internal"]);
        assert_eq!(d.check_resolved("mcp.internal", ip("10.9.8.7")), Ok(()));
        assert_eq!(d.check_resolved("Mcp.Internal.", ip("10.9.8.7")), Ok(()));
        assert_eq!(
            d.check_resolved("other.internal", ip("10.9.8.7")),
            Err(Blocked::Private)
        );
        assert_eq!(d.check_ip(ip("10.9.8.7")), Err(Blocked::Private));
    }

    #[test]
    fn config_entries_are_validated() {
        for bad in [
            "10.0.0.0/40",
            "0177.0.0.1",
            "0x7f000001",
            "127.1",
            "host name",
            "a..b",
            "",
        ] {
            let err = Destinations::from_config(false, [bad]).unwrap_err();
            assert!(matches!(err, NetError::Config { .. }), "{bad}: {err}");
        }
        let ok = Destinations::from_config(true, ["10.0.0.0/8", "::1", "mcp-1.corp.example"]);
        assert!(ok.is_ok());
    }
}
