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
    for e in chain(err) {
        if let Some(e) = e.downcast_ref::<crate::http_peer::Error>() {
            // The crate's client knows whether it wrote the request: its word is final,
            // whatever its source says. An established connection can fail with
            // `EHOSTUNREACH` too, after the request went out.
            return e.is_connect();
        }
        if e.downcast_ref::<std::io::Error>().is_some_and(|io| {
            matches!(
                io.kind(),
                ErrorKind::ConnectionRefused
                    | ErrorKind::AddrNotAvailable
                    | ErrorKind::HostUnreachable
                    | ErrorKind::NetworkUnreachable
            )
        }) {
            return true;
        }
    }
    false
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
    fn the_peer_client_decides_what_was_sent() {
        use crate::http_peer::Error;
        let unreachable = || std::io::Error::from(ErrorKind::HostUnreachable);
        // Failed while sending or reading, whatever the cause: sent, never to be repeated.
        assert!(classify(&Error::request(unreachable())).sent);
        // Failed to connect: not sent.
        assert!(!classify(&Error::connect(unreachable().into())).sent);
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
