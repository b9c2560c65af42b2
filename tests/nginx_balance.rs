//! Differential test: the crate's policies pick exactly the peers a real nginx picks.
//!
//! One nginx (Debian's 1.22) is started on loopback with a front server that proxies
//! `/<upstream>` to each upstream under test, and four backends (nginx `server` blocks too)
//! that answer with their own `127.0.0.1:PORT`. Every request's answer tells which peer nginx
//! chose; the same requests are then replayed, in the same order, through the crate's policy
//! on a `PeerSet` built from the same upstream description, and the two sequences must match:
//!
//! - smooth weighted round-robin (`RoundRobin`), three full cycles per weight set, and over
//!   36 peers, where the crate steps through its precomputed cycle;
//! - `least_conn` (`LeastConn`) the same way: with one request at a time every peer is idle
//!   and ties, and nginx breaks the tie by its round-robin walk;
//! - `ip_hash` (`IpHash`) from 300+ source addresses in distinct /24s of 127/8, plus `::1`;
//! - `hash $arg_k consistent` (`ConsistentHash` + `key::Arg`) over 500+ query keys.
//!
//! Each upstream gets its requests only once per nginx start, so its round-robin state
//! (current weights start at 0) is as fresh as a new `PeerSet`'s. Requests are sequential,
//! so even nginx's fallbacks to round-robin (e.g. an empty hash key) happen in the same order
//! on both sides.
//!
//! Without nginx the test is skipped, or fails under CI: see `tests/support/nginx.rs`.

#[path = "support/nginx.rs"]
mod nginx;

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant as StdInstant;

use tokio::time::Instant;
use tower_upstream::policy::{
    key, BuildIndex, Candidates, ConsistentHash, IpHash, IpHashKey, LeastConn, Policy, RoundRobin,
};
use tower_upstream::{Peer, PeerSet, Tried};

type Req = http::Request<()>;

/// Which balancer an upstream uses, as written in nginx's `upstream {}` block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Balancer {
    RoundRobin,
    LeastConn,
    IpHash,
    ConsistentArgK,
}

/// One `upstream {}` block: `(backend, weight, down)` per `server` line, in order.
#[derive(Debug)]
struct Upstream {
    name: &'static str,
    balancer: Balancer,
    servers: &'static [(usize, u32, bool)],
}

/// Number of backend servers the upstreams draw from.
const BACKENDS: usize = 36;

/// Every backend once, weights 1, 2, 3, 1, 2, 3, ...: more peers than the 32 up to which the
/// crate walks them as nginx does.
const MANY: [(usize, u32, bool); BACKENDS] = {
    let mut servers = [(0, 0, false); BACKENDS];
    let mut i = 0;
    while i < BACKENDS {
        servers[i] = (i, 1 + (i % 3) as u32, false);
        i += 1;
    }
    servers
};

const UPSTREAMS: &[Upstream] = &[
    // Round-robin: the weight sets nginx users know from the docs, and one with a `down`
    // peer (which keeps its place in the list but never gets picked).
    Upstream {
        name: "rr_5_1_1",
        balancer: Balancer::RoundRobin,
        servers: &[(0, 5, false), (1, 1, false), (2, 1, false)],
    },
    Upstream {
        name: "rr_3_2_1",
        balancer: Balancer::RoundRobin,
        servers: &[(0, 3, false), (1, 2, false), (2, 1, false)],
    },
    Upstream {
        name: "rr_1_2_3_4",
        balancer: Balancer::RoundRobin,
        servers: &[(0, 1, false), (1, 2, false), (2, 3, false), (3, 4, false)],
    },
    Upstream {
        name: "rr_down",
        balancer: Balancer::RoundRobin,
        servers: &[(0, 2, false), (1, 5, true), (2, 1, false), (3, 3, false)],
    },
    Upstream {
        name: "rr_many",
        balancer: Balancer::RoundRobin,
        servers: &MANY,
    },
    // least_conn, one request at a time: ties of every peer.
    Upstream {
        name: "lc_3_2_1",
        balancer: Balancer::LeastConn,
        servers: &[(0, 3, false), (1, 2, false), (2, 1, false)],
    },
    Upstream {
        name: "lc_many",
        balancer: Balancer::LeastConn,
        servers: &MANY,
    },
    // ip_hash: equal and unequal weights, and a `down` peer (nginx re-hashes past it).
    Upstream {
        name: "ip_1_1_1",
        balancer: Balancer::IpHash,
        servers: &[(0, 1, false), (1, 1, false), (2, 1, false)],
    },
    Upstream {
        name: "ip_3_1_2",
        balancer: Balancer::IpHash,
        servers: &[(0, 3, false), (1, 1, false), (2, 2, false)],
    },
    Upstream {
        name: "ip_down",
        balancer: Balancer::IpHash,
        servers: &[(0, 1, false), (1, 1, true), (2, 1, false)],
    },
    // hash $arg_k consistent: the ring depends on the `server` strings, which the crate's
    // peers copy; and a `down` peer (its keys move to the next point on the ring).
    Upstream {
        name: "ch_1_1_1",
        balancer: Balancer::ConsistentArgK,
        servers: &[(0, 1, false), (1, 1, false), (2, 1, false)],
    },
    Upstream {
        name: "ch_2_1_1",
        balancer: Balancer::ConsistentArgK,
        servers: &[(0, 2, false), (1, 1, false), (2, 1, false)],
    },
    Upstream {
        name: "ch_down",
        balancer: Balancer::ConsistentArgK,
        servers: &[(0, 1, false), (1, 1, false), (2, 1, true), (3, 1, false)],
    },
];

/// The name of backend `b` in nginx's `server` lines and in the crate's peers.
fn backend_name(backend_ports: &[u16], b: usize) -> String {
    format!("127.0.0.1:{}", backend_ports[b])
}

/// nginx's `http {}` contents: upstreams, the front server, the backends.
fn config(front: u16, backend_ports: &[u16], ipv6: bool) -> String {
    let mut c = String::new();
    for u in UPSTREAMS {
        let _ = writeln!(c, "    upstream {} {{", u.name);
        match u.balancer {
            Balancer::RoundRobin => {}
            Balancer::LeastConn => c.push_str("        least_conn;\n"),
            Balancer::IpHash => c.push_str("        ip_hash;\n"),
            Balancer::ConsistentArgK => c.push_str("        hash $arg_k consistent;\n"),
        }
        for &(b, weight, down) in u.servers {
            let down = if down { " down" } else { "" };
            let name = backend_name(backend_ports, b);
            let _ = writeln!(c, "        server {name} weight={weight}{down};");
        }
        c.push_str("    }\n");
    }
    let _ = writeln!(c, "    server {{\n        listen 127.0.0.1:{front};");
    if ipv6 {
        let _ = writeln!(c, "        listen [::1]:{front};");
    }
    for u in UPSTREAMS {
        let _ = writeln!(
            c,
            "        location = /{0} {{ proxy_pass http://{0}; }}",
            u.name
        );
    }
    c.push_str("    }\n");
    for b in 0..BACKENDS {
        let name = backend_name(backend_ports, b);
        let _ = writeln!(
            c,
            "    server {{ listen {name}; location / {{ return 200 \"{name}\"; }} }}"
        );
    }
    c
}

/// The crate's peer set for `u`, peers named like nginx's `server` lines.
fn peer_set(u: &Upstream, backend_ports: &[u16]) -> PeerSet {
    let peers: Vec<Peer<()>> = u
        .servers
        .iter()
        .map(|&(b, weight, down)| {
            let peer = Peer::new(backend_name(backend_ports, b), ()).weight(weight);
            if down {
                peer.down()
            } else {
                peer
            }
        })
        .collect();
    PeerSet::new(&peers)
}

/// One request to an upstream: from where, with which URI.
#[derive(Debug, Clone)]
struct Probe {
    src: IpAddr,
    uri: String,
}

/// The requests each upstream gets.
fn probes(u: &Upstream, ipv6: bool) -> Vec<Probe> {
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let path = format!("/{}", u.name);
    match u.balancer {
        Balancer::RoundRobin | Balancer::LeastConn => {
            // Three full cycles of the available peers' weights.
            let cycle: u32 = u.servers.iter().filter(|s| !s.2).map(|s| s.1).sum();
            (0..3 * cycle)
                .map(|_| Probe {
                    src: local,
                    uri: path.clone(),
                })
                .collect()
        }
        Balancer::IpHash => ip_hash_sources(ipv6)
            .into_iter()
            .map(|src| Probe {
                src,
                uri: path.clone(),
            })
            .collect(),
        Balancer::ConsistentArgK => hash_queries()
            .into_iter()
            .map(|q| Probe {
                src: local,
                uri: format!("{path}?{q}"),
            })
            .collect(),
    }
}

/// A deterministic pseudo-random sequence (no `rand` dependency).
fn lcg(seed: u64) -> impl Iterator<Item = u64> {
    let mut x = seed;
    std::iter::repeat_with(move || {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        x >> 33
    })
}

/// Client addresses for ip_hash: 127.A.B.1 for 300 distinct (A, B), i.e. 300 /24s (ip_hash
/// hashes the first three octets), then other hosts in the first 20 of those /24s (which
/// must not change the pick), then `::1` when IPv6 loopback works.
fn ip_hash_sources(ipv6: bool) -> Vec<IpAddr> {
    let mut nets: Vec<(u8, u8)> = vec![(0, 0), (255, 255), (0, 255), (255, 0)];
    for x in lcg(7) {
        let net = ((x >> 8) as u8, x as u8);
        if !nets.contains(&net) {
            nets.push(net);
        }
        if nets.len() == 300 {
            break;
        }
    }
    let mut out: Vec<IpAddr> = nets
        .iter()
        .map(|&(a, b)| Ipv4Addr::new(127, a, b, 1).into())
        .collect();
    for (&(a, b), host) in nets
        .iter()
        .zip([77, 254, 2, 100, 128].iter().cycle())
        .take(20)
    {
        out.push(Ipv4Addr::new(127, a, b, *host).into());
    }
    if ipv6 {
        out.push(Ipv6Addr::LOCALHOST.into());
    }
    out
}

/// Query strings for `hash $arg_k consistent`: 500 distinct keys of assorted shapes (raw,
/// percent-escaped, with `/`), some after other arguments (including one whose name ends in
/// `k`), some named `K` (nginx's `$arg_k` matches names ignoring ASCII case), and a few
/// requests without a usable key, which both sides balance by round-robin.
fn hash_queries() -> Vec<String> {
    let mut out = Vec::new();
    for (i, x) in lcg(11).take(500).enumerate() {
        let key = match i % 5 {
            0 => format!("user{i}"),
            1 => format!("{x:08x}"),
            2 => format!("/item/{i}/{}", x % 1000),
            3 => format!("a%20b%2F{i}"),
            _ => format!("session-{x}-{i}.x~_"),
        };
        let query = if i % 7 == 0 {
            format!("x=1&k={key}")
        } else if i % 11 == 0 {
            format!("kk=zz&k={key}&k=ignored")
        } else if i % 13 == 0 {
            format!("y=2&K={key}")
        } else {
            format!("k={key}")
        };
        out.push(query);
        if i % 50 == 25 {
            // nginx: an empty key falls back to round-robin; the crate: no key, same.
            out.push("k=".to_owned());
            out.push("other=1".to_owned());
        }
    }
    out
}

/// The crate's picks for `probes`, in order, on a fresh peer set.
fn crate_picks(u: &Upstream, set: &PeerSet, probes: &[Probe]) -> Vec<usize> {
    // Every request is a first attempt (nothing tried), and no peer fails.
    let tried = Tried::new();
    let candidates = Candidates::new(set, &tried, Instant::now());
    let chash = ConsistentHash::new(key::Arg::new("k"));
    let ring = chash.build_index(set);
    let ranges = IpHash::new().build_index(set);
    // Built once, as an `Upstream` does: the cycle's position is kept between picks.
    let cycle = RoundRobin::new().build_index(set);
    let lc_cycle = LeastConn::new().build_index(set);
    probes
        .iter()
        .map(|probe| {
            let pick = match u.balancer {
                Balancer::RoundRobin => {
                    Policy::<Req>::pick(&RoundRobin::new(), &candidates, &cycle, &mut ())
                }
                Balancer::LeastConn => {
                    Policy::<Req>::pick(&LeastConn::new(), &candidates, &lc_cycle, &mut ())
                }
                Balancer::IpHash => {
                    let mut key = IpHashKey::new(Some(probe.src));
                    Policy::<Req>::pick(&IpHash::new(), &candidates, &ranges, &mut key)
                }
                Balancer::ConsistentArgK => {
                    let req = http::Request::get(probe.uri.as_str()).body(()).unwrap();
                    let mut key = Policy::<Req>::key(&chash, &req);
                    Policy::<Req>::pick(&chash, &candidates, &ring, &mut key)
                }
            };
            pick.unwrap_or_else(|| panic!("{} from {}: crate picked nothing", probe.uri, probe.src))
        })
        .collect()
}

/// nginx's picks for `probes`, in order: the answering backend's index in `u.servers`.
async fn nginx_picks(
    u: &Upstream,
    front: u16,
    backend_ports: &[u16],
    probes: &[Probe],
) -> Vec<usize> {
    let mut picks = Vec::with_capacity(probes.len());
    for probe in probes {
        let dst = match probe.src {
            IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::LOCALHOST, front)),
            IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::LOCALHOST, front)),
        };
        let resp = nginx::get(Some(probe.src), dst, &probe.uri).await;
        let body = String::from_utf8_lossy(&resp.body);
        assert_eq!(
            resp.status, 200,
            "{} from {}: {}",
            probe.uri, probe.src, resp.head
        );
        let index = u
            .servers
            .iter()
            .position(|&(b, _, _)| backend_name(backend_ports, b) == body)
            .unwrap_or_else(|| panic!("{}: unexpected answer {body:?}", probe.uri));
        picks.push(index);
    }
    picks
}

/// Peer indices as letters (`a` = first `server` line), for readable failures.
fn letters(picks: &[usize]) -> String {
    picks.iter().map(|&i| (b'a' + i as u8) as char).collect()
}

#[tokio::test]
async fn policies_pick_the_same_peers_as_nginx() {
    let Some(bin) = nginx::require("nginx_balance") else {
        return;
    };
    let started = StdInstant::now();
    let ipv6 = nginx::ipv6_loopback_available();
    if !ipv6 {
        nginx::note("nginx_balance: [::1] cannot be bound here; skipping the IPv6 ip_hash check");
    }
    let ngx = nginx::Nginx::start(&bin, 1 + BACKENDS, |ports, _| {
        config(ports[0], &ports[1..], ipv6)
    });
    let front = ngx.ports()[0];
    let backend_ports = ngx.ports()[1..].to_vec();

    let mut failures = String::new();
    let mut compared = 0;
    for u in UPSTREAMS {
        let probes = probes(u, ipv6);
        let theirs = nginx_picks(u, front, &backend_ports, &probes).await;
        let ours = crate_picks(u, &peer_set(u, &backend_ports), &probes);
        compared += probes.len();
        let mismatches: Vec<String> = probes
            .iter()
            .zip(theirs.iter().zip(&ours))
            .filter(|(_, (t, o))| t != o)
            .map(|(p, (&t, &o))| {
                let (t, o) = (letters(&[t]), letters(&[o]));
                format!("{} from {}: nginx {t}, crate {o}", p.uri, p.src)
            })
            .collect();
        eprintln!(
            "{}: {} picks compared, {} mismatches",
            u.name,
            probes.len(),
            mismatches.len()
        );
        // Guard against a comparison that proves little: nginx must have used every peer
        // that is up (and none that is down).
        for (i, &(_, _, down)) in u.servers.iter().enumerate() {
            if theirs.contains(&i) == down {
                let _ = writeln!(
                    failures,
                    "{}: nginx picked peer {} (down: {down}) {} times",
                    u.name,
                    letters(&[i]),
                    theirs.iter().filter(|&&t| t == i).count()
                );
            }
        }
        if !mismatches.is_empty() {
            let _ = writeln!(
                failures,
                "{}: {} of {} picks differ\n  nginx: {}\n  crate: {}\n  first: {:#?}",
                u.name,
                mismatches.len(),
                probes.len(),
                letters(&theirs),
                letters(&ours),
                &mismatches[..mismatches.len().min(10)]
            );
        } else if u.servers.len() <= 4
            && matches!(u.balancer, Balancer::RoundRobin | Balancer::LeastConn)
        {
            eprintln!("  sequence {}", letters(&ours));
        }
    }
    nginx::note(&format!(
        "nginx_balance: {compared} picks compared with nginx in {:.1?}",
        started.elapsed()
    ));
    assert!(
        failures.is_empty(),
        "the crate's picks differ from nginx's:\n{failures}{}",
        ngx.logs()
    );
}
