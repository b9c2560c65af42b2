//! Which `proxy_next_upstream` condition a failed attempt falls under.

use std::error::Error as StdError;
use std::io::ErrorKind;

use http::Method;

use super::Condition;
use crate::error::{chain, is_timeout};

/// What went wrong with one attempt that ended in an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failed {
    pub(crate) condition: Condition,
    /// Whether the peer may have received (part of) the request.
    pub(crate) sent: bool,
}

/// Classifies a peer's error: `timeout`, `invalid_header` (the response head did not parse)
/// or `error`; and whether the request may have been sent (only a failure to connect proves
/// it was not).
pub(crate) fn classify(err: &(dyn StdError + 'static)) -> Failed {
    let condition = if is_timeout(err) {
        Condition::Timeout
    } else if chain(err).any(|e| {
        e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_parse)
            || e.downcast_ref::<crate::http_peer::Error>()
                .is_some_and(crate::http_peer::Error::is_invalid_response)
    }) {
        Condition::InvalidHeader
    } else {
        Condition::Error
    };
    Failed {
        condition,
        sent: !not_sent(err),
    }
}

fn not_sent(err: &(dyn StdError + 'static)) -> bool {
    chain(err).any(|e| {
        if let Some(e) = e.downcast_ref::<crate::http_peer::Error>() {
            return e.is_connect();
        }
        e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            )
        })
    })
}

/// nginx treats POST, LOCK and PATCH as non-idempotent (`NGX_HTTP_POST|LOCK|PATCH`).
pub(crate) fn is_non_idempotent(method: &Method) -> bool {
    method == Method::POST || method == Method::PATCH || method.as_str() == "LOCK"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors() {
        let refused = std::io::Error::from(ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&refused),
            Failed {
                condition: Condition::Error,
                sent: false
            }
        );
        let reset = std::io::Error::from(ErrorKind::ConnectionReset);
        assert!(classify(&reset).sent);
        let wrapped = std::io::Error::other(std::io::Error::from(ErrorKind::TimedOut));
        assert_eq!(classify(&wrapped).condition, Condition::Timeout);
    }

    #[test]
    fn non_idempotent_methods_are_nginx_s() {
        for m in ["POST", "PATCH", "LOCK"] {
            assert!(is_non_idempotent(
                &Method::from_bytes(m.as_bytes()).unwrap()
            ));
        }
        for m in ["GET", "HEAD", "PUT", "DELETE", "OPTIONS", "UNLOCK"] {
            assert!(!is_non_idempotent(
                &Method::from_bytes(m.as_bytes()).unwrap()
            ));
        }
    }
}
