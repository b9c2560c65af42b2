//! The configuration model: plain data, with `Serialize`/`Deserialize` under the `serde`
//! feature.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

use crate::ConfigError;

/// A gateway: one nginx `server` block with the upstreams its locations proxy to.
///
/// The settings that nginx inherits from `http` to `server` to `location` (`root`,
/// `index`, `proxy_set_header`, `error_page`, `client_max_body_size`) are given here for
/// the whole server and may be overridden in each [`LocationConfig`]; an `http` level
/// setting of an nginx file is imported as the server's. Build it with
/// [`GatewayConfig::build`](crate::config::GatewayConfig::build).
///
/// In TOML (`examples/gateway.toml` is the seed's `nginx.conf`):
///
/// ```toml
/// listen = ["127.0.0.1:8080"]
/// error_page = [{ codes = [502, 503, 504], uri = "/50x.html" }]
///
/// [[upstream]]
/// name = "tserver"
/// peer = [{ addr = "127.0.0.1:18081", weight = 2 }, { addr = "127.0.0.1:18082" }]
///
/// [[location]]
/// modifier = "~"
/// pattern = '\.(jsp|do)$'
/// proxy_pass = "http://tserver"
/// proxy_set_header = [["Host", "$host"], ["X-Real-IP", "$remote_addr"]]
///
/// [[location]]
/// pattern = "/"
/// root = "/www/ROOT"
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct GatewayConfig {
    /// nginx `listen`: the addresses to serve on. Empty: the embedding program decides
    /// (nginx listens on `*:80`).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub listen: Vec<SocketAddr>,
    /// nginx `server_name`: the first name is `$host` for requests without a valid `Host`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub server_name: Vec<String>,
    /// The upstream blocks (in TOML: `[[upstream]]`).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "upstream", skip_serializing_if = "Vec::is_empty")
    )]
    pub upstreams: Vec<UpstreamConfig>,
    /// The server's locations, in configuration order (in TOML: `[[location]]`).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "location", skip_serializing_if = "Vec::is_empty")
    )]
    pub locations: Vec<LocationConfig>,
    /// nginx `root` for locations that have none.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub root: Option<PathBuf>,
    /// nginx `index` for locations that have none (default: `index.html`).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub index: Option<Vec<String>>,
    /// nginx `proxy_set_header` lines for locations that have none.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub proxy_set_header: Option<Vec<(String, String)>>,
    /// nginx `error_page` lines for locations that have none.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub error_page: Vec<ErrorPageConfig>,
    /// nginx `client_max_body_size` in bytes for locations that have none (default: 1 MiB,
    /// nginx's; `0`: no limit). In TOML also `"8m"`, `"32k"`.
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "super::units::serde_size",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub client_max_body_size: Option<u64>,
    /// nginx `keepalive_requests`: how many requests a client connection carries before the
    /// server closes it (nginx's default: 1000). For the server loop that serves the gateway,
    /// as `listen` is: the built [`Gateway`](super::Gateway) does not see connections (the
    /// gateway example applies it).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub keepalive_requests: Option<u32>,
}

impl GatewayConfig {
    /// An empty configuration: no listen address, upstream or location.
    pub fn new() -> Self {
        Self::default()
    }
}

/// An nginx `upstream` block: a name, a balancing policy and peers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct UpstreamConfig {
    /// The name `proxy_pass http://<name>` refers to.
    pub name: String,
    /// The balancing policy (default round-robin).
    #[cfg_attr(feature = "serde", serde(default))]
    pub policy: PolicyConfig,
    /// The `server` lines (in TOML: `peer`).
    #[cfg_attr(feature = "serde", serde(rename = "peer"))]
    pub peers: Vec<PeerConfig>,
}

impl UpstreamConfig {
    /// An upstream called `name` with `peers`, balanced round-robin.
    pub fn new(name: impl Into<String>, peers: impl IntoIterator<Item = PeerConfig>) -> Self {
        Self {
            name: name.into(),
            policy: PolicyConfig::default(),
            peers: peers.into_iter().collect(),
        }
    }

    /// Sets the policy.
    #[must_use]
    pub fn policy(mut self, policy: PolicyConfig) -> Self {
        self.policy = policy;
        self
    }
}

/// The balancing policy of an upstream (nginx's `ip_hash`, `hash ... consistent`, ...).
///
/// In TOML: `policy = "ip_hash"`, `policy = { consistent_hash = "$request_uri" }`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum PolicyConfig {
    /// Smooth weighted round-robin, nginx's default ([`RoundRobin`](crate::policy::RoundRobin)).
    #[default]
    RoundRobin,
    /// `ip_hash` ([`IpHash`](crate::policy::IpHash)).
    IpHash,
    /// `hash <key> consistent` ([`ConsistentHash`](crate::policy::ConsistentHash)); the key
    /// is `$request_uri`, `$http_<name>`, `$cookie_<name>` or `$arg_<name>`.
    ConsistentHash(String),
    /// `least_conn` ([`LeastConn`](crate::policy::LeastConn)).
    LeastConn,
    /// `random` ([`Random`](crate::policy::Random)).
    Random,
    /// `random two least_conn` ([`Random::two_least_conn`](crate::policy::Random::two_least_conn)).
    RandomTwoLeastConn,
}

/// An nginx `server` line of an upstream: an address and its parameters.
///
/// The defaults are nginx's (`weight=1 max_fails=1 fail_timeout=10s`). In TOML,
/// `fail_timeout` and `slow_start` take nginx's syntax (`"30s"`, `"1m"`, `"500ms"`) or a
/// number of seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct PeerConfig {
    /// `host:port` (port 80 if left out). Also the peer's name.
    pub addr: String,
    /// `weight=`.
    #[cfg_attr(feature = "serde", serde(default = "defaults::weight"))]
    pub weight: u32,
    /// `max_fails=`.
    #[cfg_attr(feature = "serde", serde(default = "defaults::max_fails"))]
    pub max_fails: u32,
    /// `fail_timeout=`.
    #[cfg_attr(
        feature = "serde",
        serde(default = "defaults::fail_timeout", with = "super::units::serde_time")
    )]
    pub fail_timeout: Duration,
    /// `max_conns=` (0: unlimited).
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_zero"))]
    pub max_conns: u32,
    /// `backup`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub backup: bool,
    /// `down`.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub down: bool,
    /// `route=` (nginx Plus): the name session affinity refers to; the address if unset.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub route: Option<String>,
    /// `slow_start=` (nginx Plus); zero turns it off.
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            with = "super::units::serde_time",
            skip_serializing_if = "Duration::is_zero"
        )
    )]
    pub slow_start: Duration,
}

#[cfg(feature = "serde")]
fn is_zero(v: &u32) -> bool {
    *v == 0
}

#[cfg(feature = "serde")]
fn is_false(v: &bool) -> bool {
    !*v
}

mod defaults {
    use std::time::Duration;

    pub(super) const fn weight() -> u32 {
        1
    }
    pub(super) const fn max_fails() -> u32 {
        1
    }
    pub(super) const fn fail_timeout() -> Duration {
        Duration::from_secs(10)
    }
}

impl PeerConfig {
    /// A peer at `addr` with nginx's default parameters.
    pub fn new(addr: impl Into<String>) -> Self {
        Self {
            addr: addr.into(),
            weight: defaults::weight(),
            max_fails: defaults::max_fails(),
            fail_timeout: defaults::fail_timeout(),
            max_conns: 0,
            backup: false,
            down: false,
            route: None,
            slow_start: Duration::ZERO,
        }
    }

    /// Sets `weight=`.
    #[must_use]
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }

    /// Sets `backup`.
    #[must_use]
    pub fn backup(mut self) -> Self {
        self.backup = true;
        self
    }
}

/// The modifier of a `location`: `=`, `^~`, `~` or `~*` (none for a prefix location, or a
/// named one, whose pattern starts with `@`). In TOML: `modifier = "~"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[non_exhaustive]
pub enum Modifier {
    /// `=`: exact match.
    #[cfg_attr(feature = "serde", serde(rename = "="))]
    Exact,
    /// `^~`: a prefix that stops the regex search.
    #[cfg_attr(feature = "serde", serde(rename = "^~"))]
    PrefixNoRegex,
    /// `~`: a case-sensitive regex.
    #[cfg_attr(feature = "serde", serde(rename = "~"))]
    Regex,
    /// `~*`: a case-insensitive regex.
    #[cfg_attr(feature = "serde", serde(rename = "~*"))]
    RegexNoCase,
}

impl Modifier {
    /// The modifier as nginx writes it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Exact => "=",
            Self::PrefixNoRegex => "^~",
            Self::Regex => "~",
            Self::RegexNoCase => "~*",
        }
    }

    /// The modifier nginx's `location` takes as its first word, if `word` is one.
    pub fn parse(word: &str) -> Option<Self> {
        Some(match word {
            "=" => Self::Exact,
            "^~" => Self::PrefixNoRegex,
            "~" => Self::Regex,
            "~*" => Self::RegexNoCase,
            _ => return None,
        })
    }
}

/// An nginx `location` block.
///
/// What answers the location's requests, in nginx's order: a `return`, else an
/// `unsupported` handler (`502`), else `proxy_pass`, else the files under `root`. Settings
/// left `None` are inherited from the location around it, then from the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct LocationConfig {
    /// `=`, `^~`, `~`, `~*`, or none (a prefix, or a named location `@name`).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub modifier: Option<Modifier>,
    /// The path, prefix, regex or `@name`.
    pub pattern: String,
    /// nginx `proxy_pass` (in TOML the URL: `"http://tserver"`, `"http://tserver/app/"`).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub proxy_pass: Option<ProxyPassConfig>,
    /// nginx `return`.
    #[cfg_attr(
        feature = "serde",
        serde(default, rename = "return", skip_serializing_if = "Option::is_none")
    )]
    pub return_: Option<ReturnConfig>,
    /// A content handler this crate does not have, as written (`fastcgi_pass
    /// 127.0.0.1:9000`): the location answers `502 Bad Gateway`, as nginx does when that
    /// backend is down, and logs why with `tracing`.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub unsupported: Option<String>,
    /// nginx `root`: files are served from `root` + the normalised path.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub root: Option<PathBuf>,
    /// nginx `index`: for a path ending in `/`, the first of these files that exists is
    /// served (by an internal redirect to it).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub index: Option<Vec<String>>,
    /// nginx `proxy_set_header` lines: `(name, value)` with nginx variables.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub proxy_set_header: Option<Vec<(String, String)>>,
    /// nginx `error_page` lines.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub error_page: Option<Vec<ErrorPageConfig>>,
    /// nginx `client_max_body_size`, in bytes (`0`: no limit).
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            with = "super::units::serde_size",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub client_max_body_size: Option<u64>,
    /// nginx `internal`: only internal redirects (error pages, `index`) reach it.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_false"))]
    pub internal: bool,
    /// Nested locations (in TOML: `[[location.location]]`).
    #[cfg_attr(
        feature = "serde",
        serde(default, rename = "location", skip_serializing_if = "Vec::is_empty")
    )]
    pub locations: Vec<LocationConfig>,
}

impl LocationConfig {
    /// A location with `modifier` (none for a prefix or named location) and `pattern`.
    pub fn new(modifier: Option<Modifier>, pattern: impl Into<String>) -> Self {
        Self {
            modifier,
            pattern: pattern.into(),
            ..Self::default()
        }
    }

    /// The location as nginx writes it: `location ~ \.php$`.
    pub fn display(&self) -> String {
        match self.modifier {
            Some(m) => format!("location {} {}", m.as_str(), self.pattern),
            None => format!("location {}", self.pattern),
        }
    }
}

/// nginx `proxy_pass http://<upstream>[<uri>]`.
///
/// Parsed from and written as the URL; the host part names an upstream of the
/// configuration, the optional URI part replaces the matched prefix (see
/// [`ProxyPass`](crate::location::ProxyPass)).
///
/// ```
/// use tower_upstream::config::ProxyPassConfig;
///
/// let pass: ProxyPassConfig = "http://tserver/app/".parse()?;
/// assert_eq!(pass.upstream, "tserver");
/// assert_eq!(pass.uri.as_deref(), Some("/app/"));
/// assert_eq!(pass.to_string(), "http://tserver/app/");
/// # Ok::<_, tower_upstream::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(try_from = "String", into = "String"))]
#[non_exhaustive]
pub struct ProxyPassConfig {
    /// The upstream's name (or `host:port` of an upstream named so).
    pub upstream: String,
    /// The URI part, a path starting with `/`.
    pub uri: Option<String>,
}

impl ProxyPassConfig {
    /// `proxy_pass http://<upstream><uri>`.
    pub fn new(upstream: impl Into<String>, uri: Option<String>) -> Self {
        Self {
            upstream: upstream.into(),
            uri,
        }
    }
}

impl FromStr for ProxyPassConfig {
    type Err = ConfigError;

    fn from_str(value: &str) -> Result<Self, ConfigError> {
        let err = |reason: &str| ConfigError::InvalidProxyPass {
            value: value.into(),
            reason: reason.into(),
        };
        let rest = match value.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(err("https peers are not supported"))
            }
            _ => return Err(err("it must start with http://")),
        };
        if value.contains('$') {
            return Err(err("variables are not supported"));
        }
        let (host, uri) = match rest.find('/') {
            Some(i) => (&rest[..i], Some(rest[i..].to_owned())),
            None => (rest, None),
        };
        if host.is_empty() || host.contains(['@', '?', '#']) {
            return Err(err("no upstream name"));
        }
        Ok(Self::new(host, uri))
    }
}

impl TryFrom<String> for ProxyPassConfig {
    type Error = ConfigError;

    fn try_from(value: String) -> Result<Self, ConfigError> {
        value.parse()
    }
}

impl fmt::Display for ProxyPassConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "http://{}{}",
            self.upstream,
            self.uri.as_deref().unwrap_or("")
        )
    }
}

impl From<ProxyPassConfig> for String {
    fn from(pass: ProxyPassConfig) -> String {
        pass.to_string()
    }
}

/// nginx `return <status> [text]`: answer at once. For `301`, `302`, `303`, `307` and `308`
/// the text is the `Location`; otherwise it is the body (`text/plain`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct ReturnConfig {
    /// The status.
    pub status: u16,
    /// The body, or the redirect's URL.
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub text: Option<String>,
}

impl ReturnConfig {
    /// `return <status> [text]`.
    pub fn new(status: u16, text: Option<String>) -> Self {
        Self { status, text }
    }
}

/// One nginx `error_page` line: `error_page <codes> [=[status]] <uri>`.
///
/// In TOML: `{ codes = [500, 502], uri = "/50x.html" }`, with `answer = "page"` for `=`
/// and `answer = { status = 200 }` for `=200`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(deny_unknown_fields))]
#[non_exhaustive]
pub struct ErrorPageConfig {
    /// The statuses that get the page.
    pub codes: Vec<u16>,
    /// The status of the answer.
    #[cfg_attr(feature = "serde", serde(default, skip_serializing_if = "is_error"))]
    pub answer: ErrorPageAnswer,
    /// The page: a URI (`/50x.html`), a named location (`@fallback`) or a URL to redirect to.
    pub uri: String,
}

#[cfg(feature = "serde")]
fn is_error(answer: &ErrorPageAnswer) -> bool {
    *answer == ErrorPageAnswer::Error
}

impl ErrorPageConfig {
    /// `error_page <codes> <uri>`.
    pub fn new(codes: impl IntoIterator<Item = u16>, uri: impl Into<String>) -> Self {
        Self {
            codes: codes.into_iter().collect(),
            answer: ErrorPageAnswer::Error,
            uri: uri.into(),
        }
    }
}

/// The status an error page is answered with; see
/// [`ErrorPageStatus`](crate::location::ErrorPageStatus).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(Serialize, Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum ErrorPageAnswer {
    /// No `=`: the error's own status.
    #[default]
    Error,
    /// `=`: the page's status.
    Page,
    /// `=<status>`.
    Status(u16),
}
