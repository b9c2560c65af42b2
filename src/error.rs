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
    /// A status code that is not a server error was given for synthesized failures.
    #[error("status {status} is not a 5xx status")]
    NotServerError {
        /// The status given.
        status: u16,
    },
}

/// Whether `err` or any error in its source chain is a timeout (nginx's `timeout` class).
pub(crate) fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<tower::timeout::error::Elapsed>() || e.is::<tokio::time::error::Elapsed>() {
            return true;
        }
        if let Some(e) = e.downcast_ref::<crate::http_peer::Error>() {
            return e.is_timeout();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
            // An io::Error's `source()` skips the error it wraps; look at that one too.
            if let Some(inner) = io.get_ref() {
                cur = Some(inner);
                continue;
            }
        }
        cur = e.source();
    }
    false
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
