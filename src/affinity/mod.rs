//! Session affinity: keep each user's requests on one peer, and move a session to one
//! deterministic survivor when its peer is gone.
//!
//! An [`Upstream`] with an [`Affinity`] looks for a pin in each request before its
//! [policy](crate::policy) runs:
//!
//! - [`Affinity::route`]: Tomcat / mod_jk routes. The session id is `<id>.<route>` (Tomcat's
//!   `jvmRoute`) in a cookie (`JSESSIONID`) or a `;jsessionid=` path parameter; the route names
//!   the peer ([`Peer::route`]). The id is forwarded unchanged; an unknown route is balanced
//!   like a new session.
//! - [`Affinity::cookie`]: a cookie the balancer inserts itself (HAProxy
//!   `cookie SERVERID insert indirect nocache`), signed with HMAC-SHA256 so that a client
//!   cannot pick its peer: a forged or tampered cookie counts as absent. It is set only when
//!   missing or naming another peer, and removed from the request the peer sees.
//!
//! `ip_hash` and `hash ... consistent` are affinities too; they are policies
//! ([`IpHash`](crate::policy::IpHash), [`ConsistentHash`](crate::policy::ConsistentHash)).
//!
//! When the pinned peer cannot serve (down, failed, or already tried by this request), the
//! [`Fallback`] decides: [`Fallback::Rebalance`] (the default) picks a survivor by
//! rendezvous hashing of the session key, so every request of one session lands on the same
//! survivor (what replicated Tomcat sessions need); [`Fallback::Strict`] answers `503`;
//! [`Fallback::Backup`] sends it to a named peer. A peer set to
//! [`PeerStatus::Draining`](crate::PeerStatus::Draining) keeps serving the sessions pinned to
//! it but gets no new one.
//!
//! Every response carries an [`AffinityDecision`] extension: where the pin came from, the
//! route, and whether a fallback was used.
//!
//! # Example
//!
//! ```
//! use http::{header, Request, Response};
//! use tower::{service_fn, BoxError, ServiceExt};
//! use tower_upstream::affinity::{Affinity, AffinityDecision, AffinitySource};
//! use tower_upstream::upstream::ReplayBody;
//! use tower_upstream::{Peer, SelectedPeer, Upstream};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), BoxError> {
//! let tomcat = |name: &'static str| {
//!     service_fn(move |_: Request<ReplayBody<String>>| async move {
//!         Ok::<_, BoxError>(Response::new(name.to_owned()))
//!     })
//! };
//! let upstream = Upstream::builder()
//!     .peer(Peer::new("127.0.0.1:18081", tomcat("one")).route("tomcat1"))
//!     .peer(Peer::new("127.0.0.1:18082", tomcat("two")).route("tomcat2"))
//!     .affinity(Affinity::route("JSESSIONID"))
//!     .build()?;
//!
//! for _ in 0..5 {
//!     let req = Request::get("/app")
//!         .header(header::COOKIE, "JSESSIONID=5F3C0A.tomcat2")
//!         .body(String::new())?;
//!     let res = upstream.clone().oneshot(req).await?;
//!     assert_eq!(res.extensions().get::<SelectedPeer>().unwrap().route(), "tomcat2");
//!     let decision = res.extensions().get::<AffinityDecision>().unwrap();
//!     assert_eq!(decision.source(), AffinitySource::Cookie);
//! }
//! # Ok(()) }
//! ```
//!
//! [`Upstream`]: crate::Upstream
//! [`Peer::route`]: crate::Peer::route

use std::collections::HashMap;
use std::sync::Arc;

use http::{HeaderMap, Request};

mod cookie;
pub(crate) mod rendezvous;
mod route;

pub(crate) use cookie::CookieAttributes;
pub use cookie::{InsertCookie, SameSite};
pub use route::RouteOrder;

use crate::{ConfigError, PeerSet};
use route::{route_of, session_ids, Found};

/// Where a request's affinity comes from; see the [module docs](self).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Affinity {
    /// Tomcat / mod_jk session routes.
    Route(RouteAffinity),
    /// A cookie inserted by the balancer.
    Cookie(InsertCookie),
}

impl Affinity {
    /// Routes read from the session cookie `cookie` (Tomcat: `JSESSIONID`), then from the
    /// `;jsessionid=` path parameter.
    pub fn route(cookie: &str) -> RouteAffinity {
        RouteAffinity {
            cookie: cookie.to_owned(),
            path_param: Some("jsessionid".to_owned()),
            separator: '.',
            order: RouteOrder::CookieFirst,
        }
    }

    /// A cookie called `name`, inserted by the balancer and signed with `secret` (at least
    /// 16 bytes; share it between gateway instances so they accept each other's cookies).
    pub fn cookie(name: &str, secret: impl Into<Vec<u8>>) -> InsertCookie {
        InsertCookie::new(name, Some(secret.into()))
    }

    /// An unsigned inserted cookie whose value is the peer's route, as HAProxy writes it.
    /// Any client can then choose its peer by editing the cookie.
    pub fn cookie_unsigned(name: &str) -> InsertCookie {
        InsertCookie::new(name, None)
    }
}

impl From<RouteAffinity> for Affinity {
    fn from(r: RouteAffinity) -> Self {
        Self::Route(r)
    }
}

impl From<InsertCookie> for Affinity {
    fn from(c: InsertCookie) -> Self {
        Self::Cookie(c)
    }
}

/// Settings of [`Affinity::route`].
#[derive(Debug, Clone)]
#[must_use]
pub struct RouteAffinity {
    cookie: String,
    path_param: Option<String>,
    separator: char,
    order: RouteOrder,
}

impl RouteAffinity {
    /// The path parameter holding the session id (default `jsessionid`; `None`: cookies only).
    pub fn path_param(mut self, name: Option<&str>) -> Self {
        self.path_param = name.map(str::to_owned);
        self
    }

    /// What separates the id from the route (default `.`; the route is what follows the
    /// first separator).
    pub fn separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    /// Which source is looked at first (default: cookies).
    pub fn order(mut self, order: RouteOrder) -> Self {
        self.order = order;
        self
    }
}

/// What happens to a pinned request whose peer cannot serve it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fallback {
    /// A survivor chosen by rendezvous hashing of the session key: the same one for every
    /// request of the session, and only the dead peer's sessions move.
    #[default]
    Rebalance,
    /// `503 Service Unavailable` (for backends that do not share sessions, where a silent new
    /// session is worse than an error; mod_proxy_balancer `nofailover=On`).
    Strict,
    /// The peer with this route (mod_jk `redirect=`).
    Backup(Arc<str>),
}

/// Where the pin of a request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AffinitySource {
    /// A cookie (the session cookie, or the inserted one).
    Cookie,
    /// The `;jsessionid=` path parameter.
    Url,
    /// The client address (`ip_hash`).
    Ip,
    /// A request key (`hash ... consistent`).
    Hash,
    /// Nothing: the request was balanced as a new session.
    None,
}

impl AffinitySource {
    /// A short name for logs: `cookie`, `url`, `ip`, `hash` or `none`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cookie => "cookie",
            Self::Url => "url",
            Self::Ip => "ip",
            Self::Hash => "hash",
            Self::None => "none",
        }
    }
}

/// Response extension: how session affinity decided the peer of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AffinityDecision {
    pub(crate) source: AffinitySource,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) fallback: bool,
}

impl AffinityDecision {
    /// Where the pin came from.
    pub fn source(&self) -> AffinitySource {
        self.source
    }

    /// The route the request was pinned to, if it carried a known one.
    pub fn route(&self) -> Option<&str> {
        self.route.as_deref()
    }

    /// Whether the pinned peer could not serve and a fallback chose another.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }
}

/// A peer's place: `(in the backup tier, index)`.
pub(crate) type Place = (bool, usize);

/// An affinity resolved against an upstream's peers.
#[derive(Debug)]
pub(crate) struct Table {
    mode: Affinity,
    routes: HashMap<Arc<str>, Place>,
    pub(crate) fallback: Resolved,
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Resolved {
    Rebalance,
    Strict,
    Backup(Place),
}

/// What one request carries.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sticky {
    pub(crate) pin: Option<Place>,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) key: Option<Box<str>>,
    pub(crate) source: Option<AffinitySource>,
}

impl Table {
    pub(crate) fn new(
        mode: Affinity,
        fallback: Fallback,
        primary: &PeerSet,
        backup: Option<&PeerSet>,
    ) -> Result<Self, ConfigError> {
        let mut routes = HashMap::new();
        let tiers = std::iter::once((false, primary)).chain(backup.map(|b| (true, b)));
        for (is_backup, set) in tiers {
            for (i, p) in set.iter().enumerate() {
                if let Affinity::Cookie(_) = mode {
                    if !InsertCookie::route_ok(p.route()) {
                        return Err(ConfigError::InvalidCookie {
                            reason: format!(
                                "route `{}` of peer `{}` must be letters, digits, `-` or `_` \
                                 to be written in a cookie; set one with Peer::route",
                                p.route(),
                                p.name()
                            ),
                        });
                    }
                }
                if routes
                    .insert(Arc::from(p.route()), (is_backup, i))
                    .is_some()
                {
                    return Err(ConfigError::DuplicateRoute {
                        route: p.route().to_owned(),
                    });
                }
            }
        }
        if let Affinity::Cookie(c) = &mode {
            c.validate()?;
        }
        let fallback = match fallback {
            Fallback::Rebalance => Resolved::Rebalance,
            Fallback::Strict => Resolved::Strict,
            Fallback::Backup(route) => match routes.get(&route) {
                Some(&place) => Resolved::Backup(place),
                None => {
                    return Err(ConfigError::UnknownRoute {
                        route: route.to_string(),
                    })
                }
            },
        };
        Ok(Self {
            mode,
            routes,
            fallback,
        })
    }

    /// Reads a request's pin; with an `indirect` inserted cookie, removes it from the request.
    pub(crate) fn extract<B>(&self, req: &mut Request<B>) -> Sticky {
        match &self.mode {
            Affinity::Route(r) => {
                let path = req.uri().path();
                let mut sticky = Sticky::default();
                let ids = session_ids(
                    req.headers(),
                    path,
                    &r.cookie,
                    r.path_param.as_deref(),
                    r.order,
                );
                for (id, found) in ids {
                    let known = route_of(id, r.separator)
                        .and_then(|route| self.routes.get_key_value(route));
                    if let Some((route, &place)) = known {
                        sticky.pin = Some(place);
                        sticky.route = Some(Arc::clone(route));
                        sticky.key = Some(id.into());
                        sticky.source = Some(match found {
                            Found::Cookie => AffinitySource::Cookie,
                            Found::Url => AffinitySource::Url,
                        });
                        break;
                    }
                }
                sticky
            }
            Affinity::Cookie(c) => {
                let mut sticky = Sticky::default();
                if let Some((route, nonce)) = c.read(req.headers()) {
                    if let Some((route, &place)) = self.routes.get_key_value(route) {
                        sticky.pin = Some(place);
                        sticky.route = Some(Arc::clone(route));
                        sticky.key = Some(nonce.into());
                        sticky.source = Some(AffinitySource::Cookie);
                    }
                }
                if c.indirect {
                    c.strip(req.headers_mut());
                }
                sticky
            }
        }
    }

    /// After a peer with `route` answered: with an inserted cookie, pin the client to it
    /// unless its cookie already does.
    pub(crate) fn respond(&self, sticky: &Sticky, route: &str, headers: &mut HeaderMap) {
        if let Affinity::Cookie(c) = &self.mode {
            if sticky.route.as_deref() != Some(route) {
                c.set(headers, route, sticky.key.as_deref());
            }
        }
    }
}

#[cfg(test)]
mod tests;
