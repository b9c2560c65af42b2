use super::{BuildIndex, Candidates, HashKey, Policy, HASH_TRIES};
use crate::PeerSet;

/// nginx's `hash $key consistent`: ketama consistent hashing, compatible point for point.
///
/// Each peer gets `160 * weight` points on a ring of `u32`s, `down` peers included (so marking
/// a peer down moves only its own keys). Point `j` of a peer is nginx's
/// `crc32(HOST "\0" PORT PREV)`, where `HOST`/`PORT` come from the peer's name split at its
/// last `:` (when only digits follow) and `PREV` is the previous point as four little-endian
/// bytes (zero for the first). A request's key is hashed with CRC-32 and served by the first
/// point at or after it, wrapping around. If that peer cannot be used, the next point is
/// tried; after 20 tries, for a single peer, or for a request without a key, the pick falls
/// back to smooth round-robin.
///
/// Name peers by the `host:port` nginx would have in its `server` line to get nginx's exact
/// placement.
///
/// # Example
///
/// ```
/// use tokio::time::Instant;
/// use tower_upstream::policy::{key, BuildIndex, Candidates, ConsistentHash, Policy};
/// use tower_upstream::{Peer, PeerSet, Tried};
///
/// let peers = PeerSet::new(&[
///     Peer::new("127.0.0.1:8081", ()),
///     Peer::new("127.0.0.1:8082", ()),
/// ]);
/// let policy = ConsistentHash::new(key::RequestUri);
/// let ring = policy.build_index(&peers);
/// assert_eq!(ring.len(), 320);
///
/// let req = http::Request::get("/some/page").body(()).unwrap();
/// let tried = Tried::new();
/// let ctx = Candidates::new(&peers, &tried, Instant::now());
/// type Req = http::Request<()>;
/// let first = Policy::<Req>::pick(&policy, &ctx, &ring, &mut policy.key(&req));
/// let again = Policy::<Req>::pick(&policy, &ctx, &ring, &mut policy.key(&req));
/// assert_eq!(first, again);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsistentHash<K> {
    key: K,
}

impl<K> ConsistentHash<K> {
    /// Consistent hashing on the key extracted by `key`.
    pub const fn new(key: K) -> Self {
        Self { key }
    }
}

/// The ketama ring of a peer set: sorted, de-duplicated `(hash, peer index)` points.
#[derive(Debug, Clone, Default)]
pub struct Ring {
    points: Vec<(u32, u32)>,
}

impl Ring {
    /// Builds the ring of `peers` exactly as nginx's `ngx_http_upstream_update_chash`.
    pub fn new(peers: &PeerSet) -> Self {
        let mut points = Vec::with_capacity(peers.total_weight() as usize * 160);
        for (index, peer) in peers.iter().enumerate() {
            let (host, port) = split_server(peer.name().as_bytes());
            let mut base = crc32fast::Hasher::new();
            base.update(host);
            base.update(&[0]);
            base.update(port);
            let mut prev = 0u32;
            for _ in 0..peer.weight() as usize * 160 {
                let mut h = base.clone();
                h.update(&prev.to_le_bytes());
                prev = h.finalize();
                points.push((prev, index as u32));
            }
        }
        // nginx sorts by hash only (qsort, not stable) and keeps the first of equal hashes;
        // sorting by (hash, index) keeps a deterministic one. Collisions within 2^32 are rare.
        points.sort_unstable();
        points.dedup_by_key(|p| p.0);
        Self { points }
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the ring has no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The points, sorted by hash.
    pub fn points(&self) -> &[(u32, u32)] {
        &self.points
    }

    /// Index of the first point whose hash is `>= hash` (may be `len()`: wraps to 0).
    pub fn find(&self, hash: u32) -> usize {
        self.points.partition_point(|p| p.0 < hash)
    }

    /// The peer at point `i`, wrapping around the ring.
    pub fn peer_at(&self, i: usize) -> usize {
        self.points[i % self.points.len()].1 as usize
    }
}

/// Splits a server name into nginx's host and port parts for hashing.
fn split_server(server: &[u8]) -> (&[u8], &[u8]) {
    if server.len() >= 5 && server[..5].eq_ignore_ascii_case(b"unix:") {
        return (&server[5..], &[]);
    }
    for j in 0..server.len() {
        let c = server[server.len() - j - 1];
        if c == b':' {
            return (&server[..server.len() - j - 1], &server[server.len() - j..]);
        }
        if !c.is_ascii_digit() {
            break;
        }
    }
    (server, &[])
}

/// Per-request state of [`ConsistentHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChashKey {
    hash: Option<u32>,
    point: Option<usize>,
    tries: u32,
}

impl<K> BuildIndex for ConsistentHash<K> {
    type Index = Ring;

    fn build_index(&self, peers: &PeerSet) -> Ring {
        Ring::new(peers)
    }

    fn affinity_source(&self) -> Option<crate::affinity::AffinitySource> {
        Some(crate::affinity::AffinitySource::Hash)
    }
}

impl<Req, K> Policy<Req> for ConsistentHash<K>
where
    K: HashKey<Req>,
{
    type Key = ChashKey;

    fn key(&self, req: &Req) -> ChashKey {
        ChashKey {
            hash: self.key.hash(req),
            point: None,
            tries: 0,
        }
    }

    fn pick(&self, ctx: &Candidates<'_>, ring: &Ring, key: &mut ChashKey) -> Option<usize> {
        let Some(hash) = key.hash else {
            return ctx.smooth(|_| true);
        };
        if key.tries > HASH_TRIES || ctx.peers().is_single() {
            return ctx.smooth(|_| true);
        }
        if ring.is_empty() {
            return None;
        }
        let mut point = key.point.unwrap_or_else(|| ring.find(hash));
        let found = loop {
            let p = ring.peer_at(point);
            if ctx.is_candidate(p) {
                break Some(p);
            }
            point += 1;
            key.tries += 1;
            if key.tries > HASH_TRIES {
                break None;
            }
        };
        key.point = Some(point);
        let Some(p) = found else {
            return ctx.smooth(|_| true);
        };
        // nginx runs its smooth round-robin over the peers sharing this point's server name;
        // with unique names that only lets `effective_weight` recover.
        let weight = i64::from(ctx.peers().get(p)?.weight());
        let mut w = ctx.peers().weights();
        if w[p].effective < weight {
            w[p].effective += 1;
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use tokio::time::Instant;

    use super::*;
    use crate::{Peer, Tried};

    fn set(names: &[&str]) -> PeerSet {
        let peers: Vec<_> = names.iter().map(|n| Peer::new(*n, ())).collect();
        PeerSet::new(&peers)
    }

    #[test]
    fn server_split_like_nginx() {
        assert_eq!(
            split_server(b"127.0.0.1:8080"),
            (&b"127.0.0.1"[..], &b"8080"[..])
        );
        assert_eq!(split_server(b"[::1]:80"), (&b"[::1]"[..], &b"80"[..]));
        assert_eq!(split_server(b"backend"), (&b"backend"[..], &b""[..]));
        assert_eq!(split_server(b"a:b"), (&b"a:b"[..], &b""[..]));
        assert_eq!(split_server(b"unix:/tmp/s"), (&b"/tmp/s"[..], &b""[..]));
    }

    #[test]
    fn ring_points_match_nginx() {
        // First points of "127.0.0.1:8081" by nginx's formula:
        // crc32("127.0.0.1" "\0" "8081" le32(prev)), prev starting at 0.
        let ring = Ring::new(&set(&["127.0.0.1:8081"]));
        let mut h = crc32fast::Hasher::new();
        h.update(b"127.0.0.1\x008081\x00\x00\x00\x00");
        let p0 = h.finalize();
        let mut h = crc32fast::Hasher::new();
        h.update(b"127.0.0.1\x008081");
        h.update(&p0.to_le_bytes());
        let p1 = h.finalize();
        assert!(ring.points().iter().any(|&(x, _)| x == p0));
        assert!(ring.points().iter().any(|&(x, _)| x == p1));
        assert_eq!(ring.len(), 160);
        assert_eq!(p0, 0x50aa_bcf7, "crc32 of the first point");
    }

    #[test]
    fn weight_scales_points_and_down_peers_keep_theirs() {
        let peers = [
            Peer::new("10.0.0.1:80", ()).weight(2),
            Peer::new("10.0.0.2:80", ()).down(),
        ];
        let ring = Ring::new(&PeerSet::new(&peers));
        let count = |i| ring.points().iter().filter(|p| p.1 == i).count();
        assert_eq!((count(0), count(1)), (320, 160));
    }

    #[test]
    fn removing_a_peer_moves_only_its_keys() {
        let all = set(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"]);
        let ring_all = Ring::new(&all);
        let three = set(&["10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"]);
        let ring_three = Ring::new(&three);
        let mut moved = 0;
        for k in 0..10_000u32 {
            let h = crc32fast::hash(format!("/item/{k}").as_bytes());
            let before = ring_all.peer_at(ring_all.find(h));
            let after = ring_three.peer_at(ring_three.find(h));
            if before != 3 {
                assert_eq!(before, after, "key {k} moved although its peer stayed");
            } else {
                moved += 1;
            }
        }
        assert!(
            (1_500..3_500).contains(&moved),
            "peer 4 owned {moved} of 10000 keys"
        );
    }

    #[test]
    fn unusable_peer_moves_to_next_point() {
        let peers = [Peer::new("10.0.0.1:80", ()), Peer::new("10.0.0.2:80", ())];
        let set = PeerSet::new(&peers);
        let policy = ConsistentHash::new(|r: &&str| Some(r.to_string()));
        let ring = policy.build_index(&set);
        let tried = Tried::new();
        let now = Instant::now();
        let first = policy
            .pick(
                &Candidates::new(&set, &tried, now),
                &ring,
                &mut policy.key(&"k"),
            )
            .unwrap();
        let mut tried = Tried::new();
        tried.insert(first);
        let second = policy
            .pick(
                &Candidates::new(&set, &tried, now),
                &ring,
                &mut policy.key(&"k"),
            )
            .unwrap();
        assert_ne!(first, second);
    }
}
