//! [`Upstream`]: a `tower::Service` that balances requests over a set of peers.
//!
//! An `Upstream` is nginx's `upstream` block: peers with their `server` parameters (see
//! [`Peer`]) and a selection [policy](crate::policy). Each request goes to one peer chosen
//! by the policy among the available primaries, or among the `backup` peers when no primary
//! is available. Peers are any `Service + Clone`: an [`HttpPeer`] in production, a
//! `tower::service_fn` in tests.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response};
//! use tower::{service_fn, ServiceExt};
//! use tower_upstream::{upstream::ReplayBody, Peer, SelectedPeer, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = |name: &'static str| {
//!     service_fn(move |_: Request<ReplayBody<String>>| async move {
//!         Ok::<_, Infallible>(Response::new(name.to_owned()))
//!     })
//! };
//! let upstream = Upstream::builder()
//!     .name("tserver")
//!     .peer(Peer::new("a", backend("a")).weight(2))
//!     .peer(Peer::new("b", backend("b")))
//!     .build()?;
//!
//! let mut served = String::new();
//! for _ in 0..6 {
//!     let res = upstream.clone().oneshot(Request::new(String::new())).await?;
//!     served.push_str(res.extensions().get::<SelectedPeer>().unwrap().name());
//! }
//! assert_eq!(served, "abaaba"); // smooth weighted round-robin, shared by the clones
//! # Ok(()) }
//! ```
//!
//! Peers receive the request with its body wrapped in a [`ReplayBody`], which is what lets
//! a failed request be sent again.
//!
//! # Passive failover
//!
//! Failures are seen on real traffic; nothing probes the peers. A failed attempt counts
//! against its peer: `max_fails` failures within `fail_timeout` make the peer unavailable
//! for `fail_timeout`; after that one request is let through, and its success resets the
//! count (`max_fails = 0` turns the accounting off). Each failure also lowers the peer's
//! round-robin `effective_weight` by `weight / max_fails`; it climbs back by one per pick.
//!
//! The request itself moves on to another peer as nginx's `proxy_next_upstream` says
//! ([`NextUpstream`], default `error timeout`): never to a peer it already tried, at most
//! `tries` peers (default: all that are not `down`), not after `timeout`. A request that may
//! have reached a peer is sent again only if it is idempotent (POST, LOCK and PATCH need
//! [`Condition::NonIdempotent`]) and its body was kept whole (up to
//! [`NextUpstream::body_buffer_size`], 64 KiB by default); a connection that failed before
//! anything was sent can always move on. Errors and timeouts always count as failures,
//! listed statuses (`http_502`, ...) count only when listed, and `http_403`/`http_404`
//! never count.
//!
//! ```
//! use http::{Request, Response, StatusCode};
//! use tower::{service_fn, BoxError, ServiceExt};
//! use tower_upstream::upstream::{NextUpstream, ReplayBody};
//! use tower_upstream::{Peer, SelectedPeer, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let down = service_fn(|_: Request<ReplayBody<String>>| async {
//!     Err::<Response<String>, BoxError>(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
//! });
//! let up = service_fn(|_: Request<ReplayBody<String>>| async {
//!     Ok::<_, BoxError>(Response::new("hello".to_owned()))
//! });
//! let upstream = Upstream::builder()
//!     .peer(Peer::new("tomcat1", tower::util::BoxCloneSyncService::new(down)))
//!     .peer(Peer::new("tomcat2", tower::util::BoxCloneSyncService::new(up)))
//!     .next_upstream(NextUpstream::parse("error timeout http_502")?)
//!     .build()?;
//!
//! let res = upstream.clone().oneshot(Request::new(String::new())).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.extensions().get::<SelectedPeer>().unwrap().name(), "tomcat2");
//! assert_eq!(upstream.peer("tomcat1").unwrap().fails(), 1); // out for fail_timeout
//! # Ok(()) }
//! ```
//!
//! # Sharing
//!
//! Cloning an `Upstream` is cheap (two `Arc`s), and every clone shares the policy's state,
//! the failure counters and the active-request counts. This matters: hyper-util's
//! `TowerToHyperService` and axum clone the service for every request, so state kept by value
//! would start afresh each time and every request would go to the first peer.
//!
//! # Backpressure
//!
//! Like axum's router, an `Upstream` is always ready: it cannot know which peer a request
//! goes to before it sees the request, and waiting for every peer to be ready would let one
//! slow peer hold up all the others. The chosen peer's readiness is driven inside the
//! response future, as [`tower::util::Oneshot`] would. Limit concurrency per peer with
//! [`Peer::max_conns`].
//!
//! # Errors become responses
//!
//! The `Upstream`'s error type is [`Infallible`]: it mounts under axum's
//! `Router::fallback_service` or `nest_service` without `HandleErrorLayer`. When no peer can
//! be chosen it answers `502 Bad Gateway` (configurable with
//! [`Builder::unavailable_status`]), as nginx answers "no live upstreams". When the last
//! attempt failed the client gets `504 Gateway Timeout` for a timeout or `502 Bad Gateway`
//! for any other error; a client whose request body breaks off gets `400 Bad Request`. Every
//! response from a peer, or about a failed one, carries a [`SelectedPeer`] extension.
//!
//! # Tracing
//!
//! Each request runs in one `upstream` span (level `INFO`), entered whenever its future is
//! polled, so the peer's own work and the upstream's events about the request sit inside
//! it. Its fields are recorded as they become known: `upstream`; for each attempt `peer`,
//! `attempt` (1, 2, ...) and `affinity` (where the pin came from: `cookie`, `url`, `ip`,
//! `hash` or `none`); at the end `outcome` (`response`: a peer's response was passed on,
//! `failed`: the last attempt failed, `unavailable`: no peer could be chosen, or
//! `bad_request`: the client's body failed) and the `status` sent back. Without a
//! subscriber that wants it, the span is never built.
//!
//! # The client address
//!
//! [`IpHash`] hashes the client address, read by default from an `IpAddr` or a
//! `SocketAddr` request extension ([`ConnectAddr`]). A hyper server loop inserts the
//! `SocketAddr` it accepted; with axum, read `ConnectInfo` with a closure
//! ([`IpHash::with_addr`]).
//!
//! # Differences from nginx
//!
//! - Peer names must be unique within an upstream, and weights are at most 65535.
//! - `backup` peers work with every policy, balanced by the same policy (nginx allows them
//!   only with round-robin and `least_conn`).
//! - Times are kept in milliseconds, not whole seconds.
//! - A request counts as active on its peer until its response body is finished or dropped.
//! - When a retry finds no peer left, nginx answers `502` ("no live upstreams"); here the
//!   client gets the last peer's own response (for a listed status) or the status of the
//!   last failure (`504` after a timeout).
//! - A listed status (`http_500`, ...) counts as a failure even on the last try; nginx
//!   counts it only when it moves on.
//! - A request body larger than the buffer is streamed instead of written to a temporary
//!   file, so it is not retried once a peer started reading it (nginx's behaviour with
//!   `proxy_request_buffering off`).
//! - An answer given before such a body was read to its end carries `Connection: close`: the
//!   client's connection cannot carry another request (nginx reads and discards the rest
//!   of the body to keep it).
//! - nginx's old "quick recovery" (resetting every peer's failures when all have failed and
//!   trying once more) was removed in nginx 1.11.5; like nginx 1.22 the upstream then
//!   answers `502` at once, unless [`Builder::quick_recovery`] turns the old behaviour on.
//!   The answer's body is set with [`Builder::error_page`] (nginx `error_page 502 ...`).
//!
//! [`HttpPeer`]: crate::http_peer::HttpPeer
//! [`NextUpstream::body_buffer_size`]: NextUpstream::body_buffer_size
//! [`Peer`]: crate::Peer
//! [`Peer::max_conns`]: crate::Peer::max_conns
//! [`IpHash`]: crate::policy::IpHash
//! [`IpHash::with_addr`]: crate::policy::IpHash::with_addr
//! [`ConnectAddr`]: crate::policy::ConnectAddr
//! [`Infallible`]: std::convert::Infallible

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tower::Service;

use crate::body::ResponseBody;
use crate::policy::{BuildIndex, Policy, RoundRobin};
use crate::{BoxError, ConfigError, Peer, PeerSet, PeerState};

mod builder;
mod classify;
mod discovery;
pub mod future;
mod members;
mod next;
mod replay;
mod select;

pub use builder::Builder;
pub use future::ResponseFuture;
pub use next::{Condition, NextUpstream, NextUpstreamLayer};
pub use replay::ReplayBody;

use arc_swap::ArcSwap;
use members::Members;
use select::Selection;

/// A load-balanced set of peers; see the [module docs](self).
pub struct Upstream<S, P = RoundRobin>
where
    P: BuildIndex,
{
    shared: Arc<Shared<S, P>>,
    next: Arc<NextUpstream>,
}

struct Shared<S, P>
where
    P: BuildIndex,
{
    name: Arc<str>,
    policy: P,
    unavailable: StatusCode,
    error_pages: HashMap<StatusCode, ErrorPage>,
    quick_recovery: bool,
    outlier: Option<crate::OutlierDetection>,
    affinity: Option<(crate::affinity::Affinity, crate::affinity::Fallback)>,
    members: ArcSwap<Members<S, P>>,
    changes: std::sync::Mutex<()>,
}

/// The body of a response the upstream makes itself (nginx `error_page`).
#[derive(Debug, Clone)]
pub(crate) struct ErrorPage {
    pub(crate) content_type: http::HeaderValue,
    pub(crate) body: bytes::Bytes,
}

struct Tier<S, P>
where
    P: BuildIndex,
{
    peers: Arc<PeerSet>,
    services: Box<[S]>,
    index: P::Index,
}

/// Response extension naming the peer an [`Upstream`] chose (nginx `$upstream_addr`).
#[derive(Clone)]
pub struct SelectedPeer {
    peers: Arc<PeerSet>,
    index: usize,
    backup: bool,
}

impl SelectedPeer {
    fn state(&self) -> &PeerState {
        self.peers
            .get(self.index)
            .expect("selected index is in range")
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        self.state().name()
    }

    /// The peer's route.
    pub fn route(&self) -> &str {
        self.state().route()
    }

    /// The peer's position among the primaries, or among the backups.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether it is a backup peer.
    pub fn is_backup(&self) -> bool {
        self.backup
    }
}

impl fmt::Debug for SelectedPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelectedPeer")
            .field("name", &self.name())
            .field("index", &self.index)
            .field("backup", &self.backup)
            .finish()
    }
}

impl<S> Upstream<S> {
    /// Starts building an upstream (round-robin until [`Builder::policy`] says otherwise).
    pub fn builder() -> Builder<S> {
        Builder::default()
    }
}

impl<S, P> Upstream<S, P>
where
    P: BuildIndex,
{
    /// The upstream's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The primary peers' state (of the current membership).
    pub fn primary(&self) -> Arc<PeerSet> {
        Arc::clone(&self.shared.members.load().primary.peers)
    }

    /// The backup peers' state, if there are backup peers.
    pub fn backup(&self) -> Option<Arc<PeerSet>> {
        self.shared
            .members
            .load()
            .backup
            .as_ref()
            .map(|t| Arc::clone(&t.peers))
    }

    /// The state of the peer called `name`, primary or backup. It is shared by every clone
    /// and survives membership changes.
    pub fn peer(&self, name: &str) -> Option<Arc<PeerState>> {
        let members = self.shared.members.load();
        std::iter::once(&members.primary)
            .chain(&members.backup)
            .find_map(|t| {
                let i = t.peers.iter().position(|p| p.name() == name)?;
                t.peers.get_shared(i)
            })
    }

    /// The names of the peers, primaries and backups, in configuration order.
    pub fn peer_names(&self) -> Vec<String> {
        let members = self.shared.members.load();
        members.peers.iter().map(|p| p.name().to_owned()).collect()
    }

    /// The selection policy.
    pub fn policy(&self) -> &P {
        &self.shared.policy
    }

    /// A snapshot of every peer's state and counters, primaries then backups; cheap enough
    /// for a status page polled every second.
    pub fn stats(&self) -> crate::stats::UpstreamStats {
        let now = tokio::time::Instant::now();
        let members = self.shared.members.load();
        let mut peers = members.primary.peers.stats(false, now);
        if let Some(backup) = &members.backup {
            peers.extend(backup.peers.stats(true, now));
        }
        crate::stats::UpstreamStats {
            name: self.name().to_owned(),
            peers,
        }
    }

    /// The retry rules (nginx `proxy_next_upstream`).
    pub fn next_upstream(&self) -> &NextUpstream {
        &self.next
    }

    /// This upstream with other retry rules; it shares the peers and all their state with
    /// `self`. [`NextUpstreamLayer`] does the same as a layer.
    pub fn with_next_upstream(&self, next: NextUpstream) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            next: Arc::new(next),
        }
    }
}

/// # Membership changes
///
/// Peers are added, removed and re-weighted at run time, from any clone. The change is
/// atomic: a request sees either the old peers or the new ones, and requests already under
/// way finish on the peers they started with. Peers that stay keep their state (failures,
/// active requests, counters) and their round-robin position, so the sequence stays smooth;
/// the consistent-hash ring and `ip_hash` move only the keys nginx would move.
///
/// ```
/// # use tower_upstream::{upstream::ReplayBody, Peer, Upstream};
/// # let svc = tower::service_fn(|_: http::Request<ReplayBody<String>>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let upstream = Upstream::builder().peer(Peer::new("a", svc.clone())).build().unwrap();
/// upstream.add_peer(Peer::new("b", svc).weight(3)).unwrap();
/// upstream.set_weight("a", 2).unwrap();
/// upstream.remove_peer("b").unwrap();
/// assert_eq!(upstream.peer_names(), ["a"]);
/// assert_eq!(upstream.peer("a").unwrap().weight(), 2);
/// assert!(upstream.remove_peer("a").is_err()); // an upstream keeps at least one primary
/// ```
impl<S, P> Upstream<S, P>
where
    S: Clone,
    P: BuildIndex,
{
    /// Adds a peer (after the others).
    pub fn add_peer(&self, peer: Peer<S>) -> Result<(), ConfigError> {
        self.shared.change(|peers| {
            peers.push(peer);
            Ok(())
        })
    }

    /// Removes the peer called `name`; its in-flight requests finish.
    pub fn remove_peer(&self, name: &str) -> Result<(), ConfigError> {
        self.shared.change(|peers| {
            let i = find(peers, name)?;
            drop(peers.remove(i));
            Ok(())
        })
    }

    /// Changes the weight of the peer called `name`.
    pub fn set_weight(&self, name: &str, weight: u32) -> Result<(), ConfigError> {
        self.shared.change(|peers| {
            let i = find(peers, name)?;
            peers[i].weight = weight;
            Ok(())
        })
    }

    /// Changes the status of the peer called `name` (`Draining`, `Down`, `Active`).
    pub fn set_status(&self, name: &str, status: crate::PeerStatus) -> Result<(), ConfigError> {
        let peer = self.peer(name).ok_or_else(|| ConfigError::UnknownPeer {
            peer: name.to_owned(),
        })?;
        peer.set_status(status);
        Ok(())
    }
}

fn find<S>(peers: &[Peer<S>], name: &str) -> Result<usize, ConfigError> {
    peers
        .iter()
        .position(|p| p.name() == name)
        .ok_or_else(|| ConfigError::UnknownPeer {
            peer: name.to_owned(),
        })
}

impl<S, P> Clone for Upstream<S, P>
where
    P: BuildIndex,
{
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            next: Arc::clone(&self.next),
        }
    }
}

impl<S, P> fmt::Debug for Upstream<S, P>
where
    P: BuildIndex + fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("name", &self.shared.name)
            .field("policy", &self.shared.policy)
            .field("primary", &self.primary())
            .field("backup", &self.backup())
            .field("next_upstream", &self.next)
            .finish()
    }
}

/// Response extension: the client's body was not read to its end, so hyper closes the
/// client's connection after this response, which says `Connection: close`.
/// [`ProxyHeaders`](crate::proxy_headers::ProxyHeaders) keeps that header by it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CloseConnection;

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Upstream<S, P>
where
    S: Service<Request<ReplayBody<ReqBody>>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError> + 'static,
    P: Policy<Request<ReqBody>>,
    ReqBody: http_body::Body + Unpin,
    ReqBody::Error: Into<BoxError>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<S, P, ReqBody>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        ResponseFuture::new(self.clone(), req)
    }
}

#[cfg(test)]
mod next_tests;
#[cfg(test)]
mod tests;
