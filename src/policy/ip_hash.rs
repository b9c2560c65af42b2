use std::net::IpAddr;

use super::{BuildIndex, Candidates, ClientAddr, ConnectAddr, Policy, HASH_TRIES};
use crate::PeerSet;

/// nginx's `ip_hash`: the same client address goes to the same peer.
///
/// The hash is nginx's: it starts at 89 and folds in each byte of the address as
/// `hash = (hash * 113 + byte) % 6271` — the first three octets of an IPv4 address (so a
/// whole /24 sticks together), all sixteen bytes of an IPv6 one (IPv4-mapped IPv6 addresses
/// included, as nginx sees them on a dual-stack socket). The peer is found by walking the
/// weights, `down` peers included, with `hash % total_weight`. When that peer cannot be used
/// (down, failed, full or already tried) the hash is folded again; after 20 such tries, or
/// with fewer than two peers, the pick falls back to smooth round-robin.
///
/// # Differences from nginx
///
/// A request with no client address (nginx's Unix-socket case, here: no extension found by
/// the [`ClientAddr`]) is balanced by round-robin instead of hashing a fixed pseudo address,
/// so a forgotten extension spreads load instead of sending everything to one peer.
///
/// # Example
///
/// ```
/// use tokio::time::Instant;
/// use tower_upstream::policy::{BuildIndex, Candidates, IpHash, Policy};
/// use tower_upstream::{Peer, PeerSet, Tried};
///
/// let peers = PeerSet::new(&[Peer::new("a", ()), Peer::new("b", ()), Peer::new("c", ())]);
/// let policy = IpHash::new();
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert("192.0.2.1:40000".parse::<std::net::SocketAddr>().unwrap());
/// let mut key = policy.key(&req);
/// let tried = Tried::new();
/// let ctx = Candidates::new(&peers, &tried, Instant::now());
/// // nginx sends 192.0.2.x to the first of three equal servers.
/// let ranges = policy.build_index(&peers);
/// assert_eq!(Policy::<http::Request<()>>::pick(&policy, &ctx, &ranges, &mut key), Some(0));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct IpHash<A = ConnectAddr> {
    addr: A,
}

impl IpHash {
    /// `ip_hash` on the address found by [`ConnectAddr`].
    pub const fn new() -> Self {
        Self { addr: ConnectAddr }
    }
}

impl<A> IpHash<A> {
    /// `ip_hash` on the address found by `addr`.
    pub const fn with_addr(addr: A) -> Self {
        Self { addr }
    }
}

/// Per-request state of [`IpHash`]: the address bytes and the running hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpHashKey {
    bytes: [u8; 16],
    len: u8,
    hash: u32,
    tries: u32,
}

impl IpHashKey {
    /// The state for a client at `addr` (`None`: no address, round-robin).
    pub fn new(addr: Option<IpAddr>) -> Self {
        let mut bytes = [0; 16];
        let len = match addr {
            Some(IpAddr::V4(v4)) => {
                bytes[..3].copy_from_slice(&v4.octets()[..3]);
                3
            }
            Some(IpAddr::V6(v6)) => {
                bytes = v6.octets();
                16
            }
            None => 0,
        };
        Self {
            bytes,
            len,
            hash: 89,
            tries: 0,
        }
    }

    /// The hashed address bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// nginx's hash step: fold the address bytes into `hash` once.
    pub fn fold(&self, mut hash: u32) -> u32 {
        for &b in self.bytes() {
            hash = (hash * 113 + u32::from(b)) % 6271;
        }
        hash
    }
}

/// Where each peer's share of the total weight starts, for finding the peer a hash lands on.
#[derive(Debug, Clone, Default)]
pub struct WeightRanges(Vec<u64>);

impl WeightRanges {
    /// The ranges of `peers`, `down` peers included (nginx walks them all).
    pub fn new(peers: &PeerSet) -> Self {
        let mut start = 0;
        Self(
            peers
                .iter()
                .map(|p| {
                    let s = start;
                    start += u64::from(p.weight());
                    s
                })
                .collect(),
        )
    }

    /// The peer whose range holds `w` (`w < total_weight`): the peer nginx's walk
    /// `while (w >= peer->weight) { w -= peer->weight; peer = peer->next; }` ends on.
    pub fn find(&self, w: u64) -> usize {
        self.0.partition_point(|&start| start <= w) - 1
    }
}

impl<A> BuildIndex for IpHash<A> {
    type Index = WeightRanges;

    fn build_index(&self, peers: &PeerSet) -> WeightRanges {
        WeightRanges::new(peers)
    }

    fn affinity_source(&self) -> Option<crate::affinity::AffinitySource> {
        Some(crate::affinity::AffinitySource::Ip)
    }
}

impl<Req, A> Policy<Req> for IpHash<A>
where
    A: ClientAddr<Req>,
{
    type Key = IpHashKey;

    fn key(&self, req: &Req) -> IpHashKey {
        IpHashKey::new(self.addr.client_addr(req))
    }

    fn pick(
        &self,
        ctx: &Candidates<'_>,
        ranges: &WeightRanges,
        key: &mut IpHashKey,
    ) -> Option<usize> {
        let peers = ctx.peers();
        if key.len == 0 || key.tries > HASH_TRIES || peers.len() < 2 {
            return ctx.smooth(|_| true);
        }
        let mut hash = key.hash;
        loop {
            hash = key.fold(hash);
            let p = ranges.find(u64::from(hash) % peers.total_weight());
            if ctx.is_candidate(p) {
                key.hash = hash;
                return Some(p);
            }
            key.tries += 1;
            if key.tries > HASH_TRIES {
                return ctx.smooth(|_| true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::policy::round_robin::tests::weighted;
    use crate::{Peer, Tried};

    fn pick(set: &PeerSet, addr: &str) -> usize {
        let mut key = IpHashKey::new(Some(addr.parse().unwrap()));
        let tried = Tried::new();
        let policy = IpHash::with_addr(|_: &()| None);
        policy
            .pick(
                &Candidates::new(set, &tried, Instant::now()),
                &policy.build_index(set),
                &mut key,
            )
            .unwrap()
    }

    #[test]
    fn nginx_hash_values() {
        // nginx: hash = 89, then hash = (hash * 113 + byte) % 6271 for 192, 0, 2.
        let key = IpHashKey::new(Some("192.0.2.200".parse().unwrap()));
        assert_eq!(key.bytes(), &[192, 0, 2]);
        assert_eq!(key.fold(89), 6255);
        let key = IpHashKey::new(Some("2001:db8::1".parse().unwrap()));
        assert_eq!(key.bytes().len(), 16);
        assert_eq!(key.fold(89), 2600);
    }

    #[test]
    fn ipv4_mapping_matches_nginx() {
        // Expected peers computed with nginx's ip_hash function (see tests/nginx_balance.rs
        // for the same mapping checked against a running nginx).
        let three = weighted(&[1, 1, 1]);
        let cases = [
            ("192.0.2.1", 0),
            ("192.0.2.254", 0),
            ("10.1.2.3", 1),
            ("127.0.0.1", 2),
            ("127.0.1.1", 0),
            ("203.0.113.9", 0),
        ];
        for (addr, want) in cases {
            assert_eq!(pick(&three, addr), want, "{addr}");
        }
        let weighted = weighted(&[3, 1, 2]);
        let cases = [("192.0.2.1", 1), ("10.1.2.3", 2), ("127.0.1.1", 1)];
        for (addr, want) in cases {
            assert_eq!(pick(&weighted, addr), want, "{addr} weighted");
        }
    }

    #[test]
    fn ipv6_mapping_matches_nginx() {
        let three = weighted(&[1, 1, 1]);
        let cases = [
            ("2001:db8::1", 2),
            ("::1", 2),
            ("fe80::1:2", 0),
            ("::ffff:192.0.2.1", 0),
        ];
        for (addr, want) in cases {
            assert_eq!(pick(&three, addr), want, "{addr}");
        }
    }

    #[test]
    fn rehashes_past_down_peer_like_nginx() {
        let peers = [
            Peer::new("a", ()),
            Peer::new("b", ()),
            Peer::new("c", ()).down(),
        ];
        let set = PeerSet::new(&peers);
        // 127.0.0.x lands on c, c again after one more fold, then on b.
        assert_eq!(pick(&set, "127.0.0.1"), 1);
    }

    #[test]
    fn no_address_falls_back_to_round_robin() {
        let set = weighted(&[1, 1]);
        let tried = Tried::new();
        let ctx = Candidates::new(&set, &tried, Instant::now());
        let mut key = IpHashKey::new(None);
        let policy = IpHash::new();
        let ranges = policy.build_index(&set);
        let a = Policy::<http::Request<()>>::pick(&policy, &ctx, &ranges, &mut key);
        let b = Policy::<http::Request<()>>::pick(&policy, &ctx, &ranges, &mut key);
        assert_eq!((a, b), (Some(0), Some(1)));
    }
}
