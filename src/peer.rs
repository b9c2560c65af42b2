//! One peer of an upstream: its service and its nginx `server` parameters.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// A peer of an [`Upstream`]: an inner service plus nginx's `server` parameters.
///
/// The defaults are nginx's: `weight=1 max_fails=1 fail_timeout=10s max_conns=0`, neither
/// `backup` nor `down`. The `route` (the name a session affinity refers to, like Tomcat's
/// `jvmRoute`) defaults to the peer's name.
///
/// The name also plays the part of nginx's `server` address in `hash ... consistent`: the ring
/// points are derived from it exactly as nginx derives them from `host:port`, so name peers by
/// their `host:port` to land requests where nginx would.
///
/// ```
/// use std::time::Duration;
/// use tower_upstream::Peer;
///
/// let peer = Peer::new("127.0.0.1:18081", ())
///     .weight(5)
///     .max_fails(3)
///     .fail_timeout(Duration::from_secs(30))
///     .route("tomcat1");
/// assert_eq!(peer.name(), "127.0.0.1:18081");
/// assert_eq!(peer.get_weight(), 5);
/// assert_eq!(peer.get_route(), "tomcat1");
/// ```
///
/// [`Upstream`]: crate::Upstream
#[derive(Clone)]
#[must_use]
pub struct Peer<S = ()> {
    pub(crate) name: Arc<str>,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) service: S,
    pub(crate) weight: u32,
    pub(crate) max_fails: u32,
    pub(crate) fail_timeout: Duration,
    pub(crate) slow_start: Duration,
    pub(crate) max_conns: u32,
    pub(crate) backup: bool,
    pub(crate) down: bool,
}

impl<S> Peer<S> {
    /// A peer called `name` served by `service`, with nginx's default parameters.
    pub fn new(name: impl Into<Arc<str>>, service: S) -> Self {
        Self {
            name: name.into(),
            route: None,
            service,
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            slow_start: Duration::ZERO,
            max_conns: 0,
            backup: false,
            down: false,
        }
    }

    /// nginx `weight=`: the peer's share of requests. Must be at least 1.
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// nginx `max_fails=`: failures within `fail_timeout` that make the peer unavailable.
    /// `0` disables the accounting.
    pub fn max_fails(mut self, max_fails: u32) -> Self {
        self.max_fails = max_fails;
        self
    }

    /// nginx `fail_timeout=`: the window for counting failures, and how long the peer then
    /// stays unavailable.
    pub fn fail_timeout(mut self, fail_timeout: Duration) -> Self {
        self.fail_timeout = fail_timeout;
        self
    }

    /// nginx Plus `slow_start=`: after the peer comes back (a success after it was failed,
    /// or set `Active` again), its round-robin weight climbs from near zero to its full
    /// weight over this time, so a node that just restarted is not flooded. Zero (the
    /// default) turns it off. Used by the round-robin parts of the policies.
    pub fn slow_start(mut self, slow_start: Duration) -> Self {
        self.slow_start = slow_start;
        self
    }

    /// nginx `max_conns=`: the most requests in flight to this peer; `0` means unlimited.
    pub fn max_conns(mut self, max_conns: u32) -> Self {
        self.max_conns = max_conns;
        self
    }

    /// nginx `backup`: only used when every primary peer is unavailable.
    pub fn backup(mut self) -> Self {
        self.backup = true;
        self
    }

    /// nginx `down`: the peer is never chosen (it keeps its place in `ip_hash` and the
    /// consistent-hash ring, as in nginx, so other clients do not move).
    pub fn down(mut self) -> Self {
        self.down = true;
        self
    }

    /// The route name that session affinity refers to (Tomcat `jvmRoute`). Defaults to the name.
    pub fn route(mut self, route: impl Into<Arc<str>>) -> Self {
        self.route = Some(route.into());
        self
    }

    /// The peer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The peer's route: the one set with [`Peer::route`], or else its name.
    pub fn get_route(&self) -> &str {
        self.route.as_deref().unwrap_or(&self.name)
    }

    /// The peer's weight.
    pub fn get_weight(&self) -> u32 {
        self.weight
    }

    /// Whether the peer is a `backup` peer.
    pub fn is_backup(&self) -> bool {
        self.backup
    }

    /// The inner service.
    pub fn service(&self) -> &S {
        &self.service
    }

    /// Replaces the inner service, keeping the parameters.
    pub fn map_service<T>(self, f: impl FnOnce(S) -> T) -> Peer<T> {
        Peer {
            name: self.name,
            route: self.route,
            service: f(self.service),
            weight: self.weight,
            max_fails: self.max_fails,
            fail_timeout: self.fail_timeout,
            slow_start: self.slow_start,
            max_conns: self.max_conns,
            backup: self.backup,
            down: self.down,
        }
    }
}

impl<S> fmt::Debug for Peer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.name)
            .field("route", &self.get_route())
            .field("service", &std::any::type_name::<S>())
            .field("weight", &self.weight)
            .field("max_fails", &self.max_fails)
            .field("fail_timeout", &self.fail_timeout)
            .field("max_conns", &self.max_conns)
            .field("backup", &self.backup)
            .field("down", &self.down)
            .finish()
    }
}
