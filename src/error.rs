//! Error types.

use std::error::Error as StdError;

/// An upstream configuration that cannot work, reported by [`Builder::build`].
///
/// [`Builder::build`]: crate::upstream::Builder::build
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The upstream has no primary peer (nginx: "no servers are inside upstream").
    #[error("upstream `{upstream}` has no primary peers")]
    NoPeers {
        /// The upstream's name.
        upstream: String,
    },
    /// A weight outside `1..=65535`.
    #[error("peer `{peer}` has weight {weight}; it must be between 1 and {max}", max = crate::MAX_WEIGHT)]
    InvalidWeight {
        /// The peer's name.
        peer: String,
        /// The weight given.
        weight: u32,
    },
    /// Two peers share a name (names identify peers for hashing and affinity).
    #[error("upstream `{upstream}` has two peers named `{peer}`")]
    DuplicatePeer {
        /// The upstream's name.
        upstream: String,
        /// The repeated name.
        peer: String,
    },
    /// A word of a `proxy_next_upstream` line that is not a condition.
    #[error("invalid proxy_next_upstream value `{value}`")]
    InvalidNextUpstream {
        /// The word.
        value: String,
    },
    /// No peer has that name.
    #[error("no peer is named `{peer}`")]
    UnknownPeer {
        /// The name.
        peer: String,
    },
    /// Two peers share a route name (routes identify peers for session affinity).
    #[error("two peers have the route `{route}`")]
    DuplicateRoute {
        /// The repeated route.
        route: String,
    },
    /// A fallback names a route that no peer has.
    #[error("no peer has the route `{route}`")]
    UnknownRoute {
        /// The route.
        route: String,
    },
    /// An inserted affinity cookie that cannot be written safely.
    #[error("invalid affinity cookie: {reason}")]
    InvalidCookie {
        /// What is wrong.
        reason: String,
    },
    /// A status code that is not a server error was given for synthesized failures.
    #[error("status {status} is not a 5xx status")]
    NotServerError {
        /// The status given.
        status: u16,
    },
    /// A header name that is not a valid HTTP field name.
    #[error("invalid header name `{name}`")]
    InvalidHeaderName {
        /// The name given.
        name: String,
    },
    /// A header value (or a literal part of one) with bytes a header cannot carry, such as
    /// control characters.
    #[error("invalid value `{value}` for header `{name}`")]
    InvalidHeaderValue {
        /// The header's name.
        name: String,
        /// The value given.
        value: String,
    },
    /// A `$variable` in a header value that is not known, or a lone `$`.
    #[error("unknown variable `{variable}` in the value of header `{name}`")]
    UnknownVariable {
        /// The header's name.
        name: String,
        /// The variable as written.
        variable: String,
    },
    /// A hop-by-hop header (`Connection`, `Upgrade`, ...) given a value to send: these are
    /// never forwarded, and upgrades are tunnelled by the `UpgradeLayer`.
    #[error("hop-by-hop header `{name}` cannot be set")]
    HopByHopHeader {
        /// The header's name.
        name: String,
    },
    /// An address or CIDR block (`10.0.0.0/8`, `2001:db8::/32`) that does not parse, or whose
    /// address has bits set past the prefix.
    #[error("invalid address or CIDR block `{value}`")]
    InvalidCidr {
        /// The value given.
        value: String,
    },
    /// A regex location whose pattern does not compile.
    #[error("`{location}`: invalid regex: {error}")]
    InvalidLocationRegex {
        /// The location, as nginx writes it (`location ~ \.php$`).
        location: String,
        /// The regex compiler's message.
        error: String,
    },
    /// Two locations that nginx would reject as duplicates (same kind and pattern at the
    /// same level, or two named locations with the same name).
    #[error("duplicate `{location}`")]
    DuplicateLocation {
        /// The second location, as nginx writes it.
        location: String,
    },
    /// A location nginx would not accept where it is (nesting rules, a named location
    /// without `@`).
    #[error("`{location}`: {reason}")]
    InvalidLocation {
        /// The location, as nginx writes it.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A `proxy_pass` URI part that is not a path starting with `/` without query.
    #[error("invalid proxy_pass URI `{uri}`: it must be a path starting with `/`, without query")]
    InvalidProxyPassUri {
        /// The URI given.
        uri: String,
    },
    /// An `error_page` line nginx would reject.
    #[error("invalid error_page `{page}`: {reason}")]
    InvalidErrorPage {
        /// The page's target.
        page: String,
        /// What is wrong.
        reason: String,
    },
    /// A `proxy_pass` (in a [config](crate::config)) names an upstream that is not defined.
    #[error("`{location}`: proxy_pass to `{upstream}`, which is not a defined upstream")]
    UnknownUpstream {
        /// The location, as nginx writes it.
        location: String,
        /// The upstream's name.
        upstream: String,
    },
    /// Two upstreams (in a [config](crate::config)) have the same name.
    #[error("duplicate upstream `{upstream}`")]
    DuplicateUpstream {
        /// The repeated name.
        upstream: String,
    },
    /// A peer address that is not `host[:port]`.
    #[error("upstream `{upstream}`: invalid peer address `{peer}`")]
    InvalidPeerAddress {
        /// The upstream's name.
        upstream: String,
        /// The address given.
        peer: String,
    },
    /// A `hash` key the crate cannot extract.
    #[error(
        "upstream `{upstream}`: unsupported hash key `{key}` \
         (supported: $request_uri, $http_NAME, $cookie_NAME, $arg_NAME)"
    )]
    UnsupportedHashKey {
        /// The upstream's name.
        upstream: String,
        /// The key as written.
        key: String,
    },
    /// A `proxy_pass` URL that cannot be used: not `http://`, or with a bad URI part.
    #[error("invalid proxy_pass `{value}`: {reason}")]
    InvalidProxyPass {
        /// The URL given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A `return` that cannot be answered (status outside `100..=999`).
    #[error("`{location}`: invalid return: {reason}")]
    InvalidReturn {
        /// The location, as nginx writes it.
        location: String,
        /// What is wrong.
        reason: String,
    },
}

/// The error and its sources, looking inside `io::Error`s too (their `source()` skips the
/// error they wrap).
pub(crate) fn chain<'a>(
    err: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(err), |&e: &&'a (dyn StdError + 'static)| {
        let inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
        match inner {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
}

/// Whether `err` or any error in its source chain is a timeout (nginx's `timeout` class).
pub(crate) fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    chain(err).any(|e| {
        e.is::<tower::timeout::error::Elapsed>()
            || e.is::<tokio::time::error::Elapsed>()
            || e.downcast_ref::<crate::http_peer::Error>()
                .is_some_and(crate::http_peer::Error::is_timeout)
            || e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_found_in_the_chain() {
        let io = std::io::Error::new(std::io::ErrorKind::TimedOut, "slow");
        assert!(is_timeout(&io));
        let wrapped = std::io::Error::other(io);
        assert!(is_timeout(&wrapped));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_timeout(&refused));
        assert!(is_timeout(&tower::timeout::error::Elapsed::new()));
    }
}
