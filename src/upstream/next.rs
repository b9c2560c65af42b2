//! nginx's `proxy_next_upstream`: when a failed request moves on to another peer.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower::retry::budget::{Budget, TpsBudget};
use tower::Layer;

use super::Upstream;
use crate::policy::BuildIndex;
use crate::ConfigError;

/// A failure that `proxy_next_upstream` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Condition {
    /// `error`: the peer could not be reached, or failed while sending or reading.
    Error,
    /// `timeout`: the connect or read timeout elapsed.
    Timeout,
    /// `invalid_header`: the peer sent an empty or invalid response head.
    InvalidHeader,
    /// `http_500`.
    Http500,
    /// `http_502`.
    Http502,
    /// `http_503`.
    Http503,
    /// `http_504`.
    Http504,
    /// `http_403`.
    Http403,
    /// `http_404`.
    Http404,
    /// `http_429`.
    Http429,
    /// `non_idempotent`: also retry POST, LOCK and PATCH after they were sent.
    NonIdempotent,
}

impl Condition {
    const ALL: [(Condition, &'static str); 11] = [
        (Condition::Error, "error"),
        (Condition::Timeout, "timeout"),
        (Condition::InvalidHeader, "invalid_header"),
        (Condition::Http500, "http_500"),
        (Condition::Http502, "http_502"),
        (Condition::Http503, "http_503"),
        (Condition::Http504, "http_504"),
        (Condition::Http403, "http_403"),
        (Condition::Http404, "http_404"),
        (Condition::Http429, "http_429"),
        (Condition::NonIdempotent, "non_idempotent"),
    ];

    const fn bit(self) -> u16 {
        1 << self as u16
    }

    /// The condition for a response status, if `proxy_next_upstream` can name it.
    pub(crate) fn for_status(status: u16) -> Option<Self> {
        Some(match status {
            500 => Self::Http500,
            502 => Self::Http502,
            503 => Self::Http503,
            504 => Self::Http504,
            403 => Self::Http403,
            404 => Self::Http404,
            429 => Self::Http429,
            _ => return None,
        })
    }

    /// nginx's name for the condition.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("", |(_, n)| n)
    }
}

/// When and how often a failed request moves on to the next peer (nginx
/// `proxy_next_upstream`, `proxy_next_upstream_tries`, `proxy_next_upstream_timeout`), and
/// how much of a request body is kept to send it again (`client_body_buffer_size`).
///
/// The default is nginx's: `error timeout`, no limit on tries or time, 64 KiB of body.
///
/// Each attempt that another may follow gets a copy of the request's head (method, URI,
/// headers, extensions); the last one that can be made gets the head itself. So a peer sees
/// the same head on every attempt, and with one peer, `off` or `tries(1)` nothing is copied.
/// Nor is it with [`HttpPeer`](crate::HttpPeer)s while no response status is listed: a failed
/// attempt's error gives the head back
/// ([`take_request_head`](crate::http_peer::Error::take_request_head)).
///
/// ```
/// use std::time::Duration;
/// use tower_upstream::upstream::{Condition, NextUpstream};
///
/// let next = NextUpstream::parse("error timeout http_502 http_503 non_idempotent")
///     .unwrap()
///     .tries(3)
///     .timeout(Duration::from_secs(10));
/// assert!(next.contains(Condition::Http502));
/// assert!(!next.contains(Condition::Http500));
/// assert_eq!(NextUpstream::parse("off").unwrap(), NextUpstream::off());
/// ```
#[derive(Clone)]
#[must_use]
pub struct NextUpstream {
    conditions: u16,
    tries: u32,
    timeout: Option<Duration>,
    body_buffer: usize,
    budget: Option<Arc<TpsBudget>>,
}

impl Default for NextUpstream {
    fn default() -> Self {
        Self {
            conditions: Condition::Error.bit() | Condition::Timeout.bit(),
            tries: 0,
            timeout: None,
            body_buffer: 64 * 1024,
            budget: None,
        }
    }
}

impl PartialEq for NextUpstream {
    fn eq(&self, other: &Self) -> bool {
        self.conditions == other.conditions
            && self.tries == other.tries
            && self.timeout == other.timeout
            && self.body_buffer == other.body_buffer
            && self.budget.is_some() == other.budget.is_some()
    }
}

impl NextUpstream {
    /// nginx's default, `proxy_next_upstream error timeout`.
    pub fn new() -> Self {
        Self::default()
    }

    /// `proxy_next_upstream off`: every request is tried once.
    pub fn off() -> Self {
        Self {
            conditions: 0,
            ..Self::default()
        }
    }

    /// Exactly these conditions, like one `proxy_next_upstream` line.
    pub fn only(conditions: impl IntoIterator<Item = Condition>) -> Self {
        Self {
            conditions: conditions.into_iter().fold(0, |m, c| m | c.bit()),
            ..Self::default()
        }
    }

    /// Parses nginx's syntax: `off`, or condition names separated by spaces.
    pub fn parse(line: &str) -> Result<Self, ConfigError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words == ["off"] {
            return Ok(Self::off());
        }
        let mut conditions = Vec::new();
        for word in words {
            let found = Condition::ALL.iter().find(|(_, name)| *name == word);
            let Some(&(c, _)) = found else {
                return Err(ConfigError::InvalidNextUpstream {
                    value: word.to_owned(),
                });
            };
            conditions.push(c);
        }
        Ok(Self::only(conditions))
    }

    /// Adds a condition.
    pub fn on(mut self, condition: Condition) -> Self {
        self.conditions |= condition.bit();
        self
    }

    /// Whether a condition is on.
    pub fn contains(&self, condition: Condition) -> bool {
        self.conditions & condition.bit() != 0
    }

    /// `proxy_next_upstream_tries`: the most peers one request is sent to; `0` (the default)
    /// means every peer that is not `down`.
    pub fn tries(mut self, tries: u32) -> Self {
        self.tries = tries;
        self
    }

    /// `proxy_next_upstream_timeout`: no new attempt starts once this long has passed since
    /// the first one. By default there is no limit.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How many bytes of a request body are kept so that it can be sent again (nginx
    /// `client_body_buffer_size`, 64 KiB by default). A larger body is streamed to the first
    /// peer and is not retried once that peer started reading it.
    pub fn body_buffer_size(mut self, bytes: usize) -> Self {
        self.body_buffer = bytes;
        self
    }

    /// A retry budget, beyond nginx: retries may add at most `percent` % to the request rate
    /// (plus `min_per_sec` retries per second), measured over `ttl`, so that a sick cluster
    /// is not hammered with retries. Shared by every clone. See [`TpsBudget`].
    pub fn budget(mut self, ttl: Duration, min_per_sec: u32, percent: f32) -> Self {
        self.budget = Some(Arc::new(TpsBudget::new(ttl, min_per_sec, percent / 100.0)));
        self
    }

    pub(crate) fn max_tries(&self) -> u32 {
        if self.conditions == 0 {
            1
        } else if self.tries == 0 {
            u32::MAX
        } else {
            self.tries
        }
    }

    /// Whether a response status is listed (`http_502`, ...): a response may then be passed
    /// over for another attempt.
    pub(crate) fn on_status(&self) -> bool {
        const STATUSES: u16 = Condition::Http500.bit()
            | Condition::Http502.bit()
            | Condition::Http503.bit()
            | Condition::Http504.bit()
            | Condition::Http403.bit()
            | Condition::Http404.bit()
            | Condition::Http429.bit();
        self.conditions & STATUSES != 0
    }

    pub(crate) fn timeout_value(&self) -> Option<Duration> {
        self.timeout
    }

    pub(crate) fn body_buffer(&self) -> usize {
        if self.conditions == 0 {
            0
        } else {
            self.body_buffer
        }
    }

    /// Counts a first attempt into the budget.
    pub(crate) fn deposit(&self) {
        if let Some(b) = &self.budget {
            b.deposit();
        }
    }

    /// Takes one retry from the budget; `true` when there is no budget.
    pub(crate) fn withdraw(&self) -> bool {
        self.budget.as_ref().is_none_or(|b| b.withdraw())
    }
}

impl fmt::Debug for NextUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = Condition::ALL
            .iter()
            .filter(|(c, _)| self.contains(*c))
            .map(|(_, n)| *n)
            .collect();
        f.debug_struct("NextUpstream")
            .field("conditions", &names)
            .field("tries", &self.tries)
            .field("timeout", &self.timeout)
            .field("body_buffer", &self.body_buffer)
            .field("budget", &self.budget.is_some())
            .finish()
    }
}

/// Applies a [`NextUpstream`] to an [`Upstream`], like a `proxy_next_upstream` line in one
/// `location`: the upstream it returns shares its peers and their state with the one it was
/// given, so several locations can retry differently over the same peers.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_upstream::upstream::{NextUpstream, NextUpstreamLayer};
/// use tower_upstream::{Peer, Upstream};
///
/// # let svc = tower::service_fn(|_: http::Request<tower_upstream::upstream::ReplayBody<String>>| async {
/// #     Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
/// # });
/// let upstream = Upstream::builder().peer(Peer::new("a", svc)).build().unwrap();
/// let strict = ServiceBuilder::new()
///     .layer(NextUpstreamLayer::new(NextUpstream::off()))
///     .service(upstream.clone());
/// assert_eq!(strict.next_upstream(), &NextUpstream::off());
/// ```
#[derive(Debug, Clone, Default)]
pub struct NextUpstreamLayer {
    next: NextUpstream,
}

impl NextUpstreamLayer {
    /// A layer that applies `next`.
    pub fn new(next: NextUpstream) -> Self {
        Self { next }
    }
}

impl<S, P> Layer<Upstream<S, P>> for NextUpstreamLayer
where
    P: BuildIndex,
{
    type Service = Upstream<S, P>;

    fn layer(&self, upstream: Upstream<S, P>) -> Upstream<S, P> {
        upstream.with_next_upstream(self.next.clone())
    }
}
