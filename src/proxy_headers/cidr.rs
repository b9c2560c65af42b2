//! CIDR blocks for trusted proxies (nginx `set_real_ip_from`).

use std::fmt;
use std::net::IpAddr;

use crate::ConfigError;

/// An address block: `10.0.0.0/8`, `2001:db8::/32`, or one address (`192.0.2.1`, `::1`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `addr[/prefix]`. The address must have no bits set past the prefix
    /// (`10.0.0.1/8` is refused: it is most likely a typo for `10.0.0.0/8` or `10.0.0.1/32`).
    pub(crate) fn parse(input: &str) -> Result<Self, ConfigError> {
        let invalid = || ConfigError::InvalidCidr {
            value: input.to_owned(),
        };
        let (addr, prefix) = match input.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (input, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
        let max = max_prefix(addr);
        let prefix = match prefix {
            None => max,
            // Digits only: `u8::from_str` would accept `+8`.
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().map_err(|_| invalid())?
            }
            Some(_) => return Err(invalid()),
        };
        if prefix > max {
            return Err(invalid());
        }
        let cidr = Self { addr, prefix };
        if bits(addr) & !cidr.mask() != 0 {
            return Err(invalid());
        }
        Ok(cidr.canonical())
    }

    /// A block inside `::ffff:0:0/96` as the IPv4 block it maps: `contains` matches mapped
    /// addresses as IPv4, so `::ffff:10.0.0.0/104` must mean `10.0.0.0/8` to match anything.
    fn canonical(self) -> Self {
        match self.addr {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Self {
                    addr: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }

    fn mask(&self) -> u128 {
        let max = max_prefix(self.addr);
        let width = u32::from(max);
        let ones = u128::MAX >> (128 - width);
        // The top `prefix` bits of a `width`-bit address.
        ones & !ones.checked_shr(u32::from(self.prefix)).unwrap_or(0)
    }

    /// Whether `addr` is inside the block. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`,
    /// as a dual-stack socket reports IPv4 clients) matches as its IPv4 address, as in nginx.
    pub(crate) fn contains(&self, addr: IpAddr) -> bool {
        let addr = canonical(addr);
        if addr.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        bits(addr) & self.mask() == bits(self.addr)
    }
}

/// An IPv4-mapped IPv6 address as IPv4; any other address as it is.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => addr,
        },
        v4 => v4,
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn blocks_contain_their_addresses() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("10.0.0.0")));
        assert!(net.contains(ip("10.255.255.255")));
        assert!(!net.contains(ip("11.0.0.0")));
        assert!(!net.contains(ip("9.255.255.255")));
        assert!(!net.contains(ip("::a00:1")), "families never mix");

        let net = Cidr::parse("192.168.1.128/25").unwrap();
        assert!(net.contains(ip("192.168.1.200")));
        assert!(!net.contains(ip("192.168.1.127")));

        let net = Cidr::parse("2001:db8::/32").unwrap();
        assert!(net.contains(ip("2001:db8:ffff::1")));
        assert!(!net.contains(ip("2001:db9::1")));
        assert!(!net.contains(ip("32.1.13.184")));
    }

    #[test]
    fn single_addresses_and_extremes() {
        let one = Cidr::parse("192.0.2.1").unwrap();
        assert!(one.contains(ip("192.0.2.1")));
        assert!(!one.contains(ip("192.0.2.2")));
        let lo6 = Cidr::parse("::1").unwrap();
        assert!(lo6.contains(ip("::1")));
        assert!(!lo6.contains(ip("::2")));
        let all4 = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all4.contains(ip("203.0.113.9")));
        assert!(!all4.contains(ip("::1")));
        let all6 = Cidr::parse("::/0").unwrap();
        assert!(all6.contains(ip("2001:db8::1")));
        assert!(Cidr::parse("255.255.255.255/32")
            .unwrap()
            .contains(ip("255.255.255.255")));
        assert!(Cidr::parse("128.0.0.0/1")
            .unwrap()
            .contains(ip("200.1.2.3")));
    }

    #[test]
    fn mapped_addresses_match_as_ipv4() {
        let net = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(net.contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn mapped_blocks_mean_their_ipv4_block() {
        // nginx never matches these (it compares mapped addresses as IPv4 against IPv6
        // blocks); here they mean what they say. Found by the `real_ip` fuzz target.
        let one = Cidr::parse("::ffff:10.0.0.0").unwrap();
        assert_eq!(one, Cidr::parse("10.0.0.0").unwrap());
        assert!(one.contains(ip("::ffff:10.0.0.0")));
        assert!(one.contains(ip("10.0.0.0")));
        let net = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(net, Cidr::parse("10.0.0.0/8").unwrap());
        assert!(net.contains(ip("::ffff:10.1.2.3")));
        let all4 = Cidr::parse("::ffff:0:0/96").unwrap();
        assert!(all4.contains(ip("192.0.2.1")));
        // Wider blocks stay IPv6 blocks, as in nginx.
        assert!(!Cidr::parse("::/64")
            .unwrap()
            .contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn invalid_blocks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "10.0.0/8",
            "::1/129",
            "2001:db8::1/32",
            "[::1]",
            "localhost",
            "unix:",
            " 10.0.0.0/8",
        ] {
            assert_eq!(
                Cidr::parse(bad),
                Err(ConfigError::InvalidCidr { value: bad.into() }),
                "{bad:?}"
            );
        }
        assert_eq!(
            Cidr::parse("10.0.0.1/8").unwrap_err().to_string(),
            "invalid address or CIDR block `10.0.0.1/8`"
        );
    }
}
