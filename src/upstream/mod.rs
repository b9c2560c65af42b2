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
//! use tower_upstream::{Peer, SelectedPeer, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = |name: &'static str| {
//!     service_fn(move |_: Request<String>| async move {
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
//! # Sharing
//!
//! Cloning an `Upstream` is cheap (one `Arc`), and every clone shares the policy's state,
//! the failure counters and the active-request counts. This matters: hyper-util's
//! `TowerToHyperService` and axum clone the service for every request, so state kept by value
//! would start afresh each time and every request would go to the first peer.
//!
//! # Backpressure
//!
//! Like axum's router, an `Upstream` is always ready: it cannot know which peer a request
//! goes to before it sees the request, and waiting for every peer to be ready would let one
//! slow peer hold up all the others. The chosen peer's readiness is driven inside the
//! response future ([`tower::util::Oneshot`]). Limit concurrency per peer with
//! [`Peer::max_conns`].
//!
//! # Errors become responses
//!
//! The `Upstream`'s error type is [`Infallible`]: it mounts under axum's
//! `Router::fallback_service` or `nest_service` without `HandleErrorLayer`. When no peer can
//! be chosen it answers `502 Bad Gateway` (configurable with
//! [`Builder::unavailable_status`]), as nginx answers "no live upstreams". When the chosen
//! peer fails, the failure is counted against it (`max_fails`/`fail_timeout`) and the client
//! gets `504 Gateway Timeout` for a timeout or `502 Bad Gateway` for any other error. Every
//! response carries a [`SelectedPeer`] extension naming the peer that served (or failed) it.
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
//! - Failed requests are not retried on another peer by the `Upstream` itself.
//!
//! [`HttpPeer`]: crate::http_peer::HttpPeer
//! [`Peer`]: crate::Peer
//! [`Peer::max_conns`]: crate::Peer::max_conns
//! [`IpHash`]: crate::policy::IpHash
//! [`IpHash::with_addr`]: crate::policy::IpHash::with_addr
//! [`ConnectAddr`]: crate::policy::ConnectAddr
//! [`Infallible`]: std::convert::Infallible

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::util::Oneshot;
use tower::{Service, ServiceExt};

use crate::body::{Active, ResponseBody};
use crate::policy::{BuildIndex, Candidates, Policy, RoundRobin};
use crate::{BoxError, PeerSet, PeerState, Tried};

mod builder;
pub mod future;

pub use builder::Builder;
pub use future::ResponseFuture;

use future::Attempt;

/// A load-balanced set of peers; see the [module docs](self).
pub struct Upstream<S, P = RoundRobin>
where
    P: BuildIndex,
{
    shared: Arc<Shared<S, P>>,
}

struct Shared<S, P>
where
    P: BuildIndex,
{
    name: Arc<str>,
    policy: P,
    primary: Tier<S, P>,
    backup: Option<Tier<S, P>>,
    unavailable: StatusCode,
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

    /// The primary peers' state.
    pub fn primary(&self) -> &PeerSet {
        &self.shared.primary.peers
    }

    /// The backup peers' state, if there are backup peers.
    pub fn backup(&self) -> Option<&PeerSet> {
        self.shared.backup.as_ref().map(|t| &*t.peers)
    }

    /// The state of the peer called `name`, primary or backup.
    pub fn peer(&self, name: &str) -> Option<&PeerState> {
        std::iter::once(self.primary())
            .chain(self.backup())
            .flat_map(PeerSet::iter)
            .find(|p| p.name() == name)
    }

    /// The selection policy.
    pub fn policy(&self) -> &P {
        &self.shared.policy
    }
}

impl<S, P> Shared<S, P>
where
    P: BuildIndex,
{
    /// Picks a peer for a request: a primary if any is available, else a backup.
    fn select<Req>(&self, key: &P::Key, now: Instant) -> Option<(&Tier<S, P>, usize, bool)>
    where
        P: Policy<Req>,
    {
        let mut tried = Tried::new();
        let mut work = key.clone();
        if let Some(i) = self.pick_in(&self.primary, &mut work, &tried, now) {
            return Some((&self.primary, i, false));
        }
        let backup = self.backup.as_ref()?;
        tried.clear();
        let mut work = key.clone();
        self.pick_in(backup, &mut work, &tried, now)
            .map(|i| (backup, i, true))
    }

    fn pick_in<Req>(
        &self,
        tier: &Tier<S, P>,
        key: &mut P::Key,
        tried: &Tried,
        now: Instant,
    ) -> Option<usize>
    where
        P: Policy<Req>,
    {
        let candidates = Candidates::new(&tier.peers, tried, now);
        if tier.peers.is_single() {
            return candidates.is_candidate(0).then_some(0);
        }
        self.policy.pick(&candidates, &tier.index, key)
    }
}

impl<S, P> Clone for Upstream<S, P>
where
    P: BuildIndex,
{
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
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
            .field("primary", &self.shared.primary.peers)
            .field("backup", &self.shared.backup.as_ref().map(|t| &t.peers))
            .finish()
    }
}

impl<S, P, ReqBody, ResBody> Service<Request<ReqBody>> for Upstream<S, P>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    S::Error: Into<BoxError>,
    P: Policy<Request<ReqBody>>,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = Infallible;
    type Future = ResponseFuture<Oneshot<S, Request<ReqBody>>>;

    #[inline]
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let shared = &*self.shared;
        let key = shared.policy.key(&req);
        let now = Instant::now();
        let Some((tier, index, backup)) = shared.select(&key, now) else {
            tracing::error!(upstream = %shared.name, "no live upstreams");
            return ResponseFuture::unavailable(shared.unavailable);
        };
        let active = Active::acquire(Arc::clone(&tier.peers), index, now);
        let selected = SelectedPeer {
            peers: Arc::clone(&tier.peers),
            index,
            backup,
        };
        let future = tier.services[index].clone().oneshot(req);
        ResponseFuture::called(future, Attempt { active, selected })
    }
}

#[cfg(test)]
mod tests;
