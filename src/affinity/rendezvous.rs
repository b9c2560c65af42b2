//! Weighted rendezvous (highest random weight) hashing: a deterministic choice of a peer for
//! a key, that moves only the keys of a peer that goes away.

/// A stable 64-bit hash of `key` and `peer` (FNV-1a, then a splitmix64 finish for
/// avalanche). Stable across processes and versions, so every gateway instance agrees.
fn hash(key: &[u8], peer: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key.iter().chain([0xff].iter()).chain(peer) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The score of `peer` (with `weight`) for `key`: `weight / -ln(u)`, `u` uniform in (0, 1).
pub(crate) fn score(key: &[u8], peer: &[u8], weight: u32) -> f64 {
    // 53 random bits, shifted into (0, 1).
    let u = ((hash(key, peer) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// The candidate with the highest score for `key`; ties go to the first.
pub(crate) fn pick<'a>(
    key: &[u8],
    candidates: impl Iterator<Item = (usize, &'a str, u32)>,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, name, weight) in candidates {
        let s = score(key, name.as_bytes(), weight);
        if best.is_none_or(|(_, b)| s > b) {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choose(key: &str, peers: &[(&str, u32)]) -> usize {
        pick(
            key.as_bytes(),
            peers.iter().enumerate().map(|(i, (n, w))| (i, *n, *w)),
        )
        .unwrap()
    }

    #[test]
    fn removing_a_peer_moves_only_its_keys() {
        let all = [("a", 1), ("b", 1), ("c", 1), ("d", 1)];
        let three = [("a", 1), ("b", 1), ("c", 1)];
        let mut moved = 0;
        for k in 0..4000 {
            let key = format!("session-{k}");
            let before = choose(&key, &all);
            let after = choose(&key, &three);
            if before == 3 {
                moved += 1;
            } else {
                assert_eq!(before, after, "{key} moved although its peer stayed");
            }
        }
        assert!((800..1200).contains(&moved), "d owned {moved} of 4000");
    }

    #[test]
    fn weights_shift_the_share() {
        let peers = [("a", 3), ("b", 1)];
        let a = (0..8000)
            .filter(|k| choose(&format!("k{k}"), &peers) == 0)
            .count();
        assert!(
            (5700..6300).contains(&a),
            "a got {a} of 8000, expected about 6000"
        );
    }

    #[test]
    fn stable_values() {
        // The hash must not change between versions, so that every gateway instance (and
        // the next release) sends a session to the same fallback peer. Values computed
        // independently from the definition (FNV-1a 64 over key, 0xff, peer; splitmix64).
        assert_eq!(hash(b"ABC.tomcat1", b"tomcat2"), 0xb821_ac99_40d0_d67b);
        assert_eq!(hash(b"", b""), 0x4f2d_b50f_1240_40cd);
        assert_ne!(hash(b"a", b"bc"), hash(b"ab", b"c"));
    }
}
