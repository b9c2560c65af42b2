use std::collections::HashMap;

use arc_swap::ArcSwap;

use bytes::Bytes;
use http::HeaderValue;
use std::sync::Arc;

use http::StatusCode;

use super::members::{Members, Settings};
use super::{ErrorPage, NextUpstream, Shared, Upstream};
use crate::affinity::{Affinity, Fallback};
use crate::policy::{BuildIndex, RoundRobin};
use crate::{ConfigError, OutlierDetection, Peer};

/// Builds an [`Upstream`]; see [`Upstream::builder`].
#[must_use]
pub struct Builder<S, P = RoundRobin> {
    name: Arc<str>,
    peers: Vec<Peer<S>>,
    policy: P,
    unavailable: StatusCode,
    next: NextUpstream,
    outlier: Option<OutlierDetection>,
    error_pages: HashMap<StatusCode, ErrorPage>,
    quick_recovery: bool,
    affinity: Option<Affinity>,
    fallback: Fallback,
}

impl<S> Default for Builder<S> {
    fn default() -> Self {
        Self {
            name: Arc::from("upstream"),
            peers: Vec::new(),
            policy: RoundRobin,
            unavailable: StatusCode::BAD_GATEWAY,
            next: NextUpstream::default(),
            outlier: None,
            error_pages: HashMap::new(),
            quick_recovery: false,
            affinity: None,
            fallback: Fallback::default(),
        }
    }
}

impl<S, P> Builder<S, P> {
    /// Names the upstream (nginx `upstream <name>`), for errors and logs.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// Adds a peer (nginx `server`). Peers keep the order they are added in, which matters
    /// to every policy as it does in nginx.
    pub fn peer(mut self, peer: Peer<S>) -> Self {
        self.peers.push(peer);
        self
    }

    /// Adds several peers.
    pub fn peers(mut self, peers: impl IntoIterator<Item = Peer<S>>) -> Self {
        self.peers.extend(peers);
        self
    }

    /// Chooses the selection policy (default: [`RoundRobin`]).
    ///
    /// ```
    /// use tower_upstream::{policy::IpHash, Peer, Upstream};
    ///
    /// let upstream = Upstream::builder()
    ///     .peer(Peer::new("a", tower::service_fn(|_: http::Request<()>| async {
    ///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    ///     })))
    ///     .policy(IpHash::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = upstream;
    /// ```
    pub fn policy<Q>(self, policy: Q) -> Builder<S, Q> {
        Builder {
            name: self.name,
            peers: self.peers,
            policy,
            unavailable: self.unavailable,
            next: self.next,
            outlier: self.outlier,
            error_pages: self.error_pages,
            quick_recovery: self.quick_recovery,
            affinity: self.affinity,
            fallback: self.fallback,
        }
    }

    /// Session affinity, tried before the policy; see [`affinity`](crate::affinity).
    pub fn affinity(mut self, affinity: impl Into<Affinity>) -> Self {
        self.affinity = Some(affinity.into());
        self
    }

    /// What happens to a pinned request whose peer cannot serve it (default:
    /// [`Fallback::Rebalance`]).
    pub fn affinity_fallback(mut self, fallback: Fallback) -> Self {
        self.fallback = fallback;
        self
    }

    /// The body of the responses the upstream makes itself with `status` (nginx
    /// `error_page 502 503 504 ...`): when no peer is available, after the last failed
    /// attempt, or for a broken request body (400). Others get a one-line text.
    ///
    /// ```
    /// use http::{HeaderValue, StatusCode};
    /// # use tower_upstream::{Peer, Upstream};
    /// # let svc = tower::service_fn(|_: http::Request<tower_upstream::upstream::ReplayBody<String>>| async {
    /// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
    /// # });
    /// let upstream = Upstream::builder()
    ///     .peer(Peer::new("a", svc))
    ///     .error_page(
    ///         StatusCode::BAD_GATEWAY,
    ///         HeaderValue::from_static("text/html"),
    ///         "<h1>We'll be right back</h1>",
    ///     )
    ///     .build()
    ///     .unwrap();
    /// # let _ = upstream;
    /// ```
    pub fn error_page(
        mut self,
        status: StatusCode,
        content_type: HeaderValue,
        body: impl Into<Bytes>,
    ) -> Self {
        let page = ErrorPage {
            content_type,
            body: body.into(),
        };
        self.error_pages.insert(status, page);
        self
    }

    /// nginx's old "quick recovery" (removed in nginx 1.11.5), opt-in: when every peer is
    /// unavailable because of failures, forget the failures and try once more instead of
    /// answering at once.
    pub fn quick_recovery(mut self, on: bool) -> Self {
        self.quick_recovery = on;
        self
    }

    /// Turns on Envoy-style outlier detection (beyond nginx): peers that return server
    /// errors in a row are ejected for a growing time. See [`OutlierDetection`].
    pub fn outlier_detection(mut self, outlier: OutlierDetection) -> Self {
        self.outlier = Some(outlier);
        self
    }

    /// When a failed request moves on to the next peer (nginx `proxy_next_upstream`);
    /// nginx's default `error timeout` unless set.
    pub fn next_upstream(mut self, next: NextUpstream) -> Self {
        self.next = next;
        self
    }

    /// The status of the response made when no peer can be chosen: `502 Bad Gateway` by
    /// default, as nginx's "no live upstreams"; `503 Service Unavailable` is the other
    /// common choice. Must be a 5xx status.
    pub fn unavailable_status(mut self, status: StatusCode) -> Self {
        self.unavailable = status;
        self
    }

    /// Checks the configuration and builds the upstream.
    ///
    /// Fails when there is no primary peer, a weight is outside `1..=65535`, two peers share
    /// a name, or the unavailable status is not a 5xx.
    pub fn build(self) -> Result<Upstream<S, P>, ConfigError>
    where
        S: Clone,
        P: BuildIndex,
    {
        if !self.unavailable.is_server_error() {
            return Err(ConfigError::NotServerError {
                status: self.unavailable.as_u16(),
            });
        }
        let affinity = self.affinity.map(|a| (a, self.fallback));
        let settings = Settings {
            name: &self.name,
            policy: &self.policy,
            outlier: self.outlier,
            affinity: affinity.as_ref(),
        };
        let members = Members::build(self.peers, &settings, None)?;
        Ok(Upstream {
            shared: Arc::new(Shared {
                name: self.name,
                policy: self.policy,
                unavailable: self.unavailable,
                error_pages: self.error_pages,
                quick_recovery: self.quick_recovery,
                outlier: self.outlier,
                affinity,
                members: ArcSwap::from_pointee(members),
                changes: Default::default(),
            }),
            next: Arc::new(self.next),
        })
    }
}

impl<S, P: std::fmt::Debug> std::fmt::Debug for Builder<S, P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("name", &self.name)
            .field("peers", &self.peers)
            .field("policy", &self.policy)
            .field("unavailable", &self.unavailable)
            .field("next_upstream", &self.next)
            .field("outlier_detection", &self.outlier)
            .field("error_pages", &self.error_pages.keys().collect::<Vec<_>>())
            .field("quick_recovery", &self.quick_recovery)
            .field("affinity", &self.affinity)
            .field("affinity_fallback", &self.fallback)
            .finish()
    }
}
