//! The path that locations are matched against, made the way nginx makes `$uri`.
//!
//! This follows the behaviour of nginx's `ngx_http_parse_complex_uri` (checked against nginx
//! 1.22 by `tests/nginx_parity.rs`):
//!
//! - every `%XX` escape is decoded, and the decoded byte is then treated like the byte itself:
//!   `%2F` is a slash, `%2E` a dot; only a decoded `%`, `#` or `?` is kept as a plain byte;
//! - `%00` (and a raw NUL byte, which nginx's request-line parser rejects), a `%` not
//!   followed by two hex digits, and a `..` that climbs above `/` are errors (nginx answers
//!   `400 Bad Request`);
//! - runs of slashes become one (`merge_slashes on`, switchable);
//! - `.` segments are dropped and `..` segments remove the segment before them;
//! - a raw `?` ends the path (the query follows), and a raw `#` ends it too.

use std::borrow::Cow;
use std::fmt;

/// A request path that nginx would reject with `400 Bad Request`: a bad `%` escape, a NUL
/// byte (raw or encoded), a `..` above the root, or a path that does not start with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPath {
    reason: &'static str,
}

impl InvalidPath {
    const fn new(reason: &'static str) -> Self {
        Self { reason }
    }
}

impl fmt::Display for InvalidPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request path: {}", self.reason)
    }
}

impl std::error::Error for InvalidPath {}

/// A normalised path and whether the raw one had percent escapes (nginx's `quoted_uri`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Normalized<'a> {
    pub(crate) path: Cow<'a, [u8]>,
    pub(crate) quoted: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Inside a segment.
    Usual,
    /// Right after a `/`.
    Slash,
    /// After `/.`.
    Dot,
    /// After `/..`.
    DotDot,
}

/// Whether `raw` is already in normal form: no escapes, no `//`, no `/.`, no `?`, `#` or NUL.
/// Most request paths are, and then the raw bytes are used without a copy.
fn is_simple(raw: &[u8], merge_slashes: bool) -> bool {
    let mut prev = 0u8;
    for &b in raw {
        match b {
            b'%' | b'?' | b'#' | 0 => return false,
            b'/' if prev == b'/' && merge_slashes => return false,
            b'.' if prev == b'/' => return false,
            _ => {}
        }
        prev = b;
    }
    true
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Drops the `/..` that ends `out` together with the segment before it; fails when there
/// is no segment before it (the path would climb above the root).
fn pop_segment(out: &mut Vec<u8>) -> Result<(), InvalidPath> {
    // `out` ends with "/..": look for the `/` that starts the segment before it.
    let before = out.len().checked_sub(4).ok_or(ABOVE_ROOT)?;
    let start = out[..=before]
        .iter()
        .rposition(|&b| b == b'/')
        .ok_or(ABOVE_ROOT)?;
    out.truncate(start + 1);
    Ok(())
}

const ABOVE_ROOT: InvalidPath = InvalidPath::new("`..` above the root");

/// Normalises a raw request path (as sent, percent-encoded) the way nginx does before it
/// matches locations.
pub(crate) fn normalize(raw: &[u8], merge_slashes: bool) -> Result<Normalized<'_>, InvalidPath> {
    let raw = if raw.is_empty() { b"/".as_slice() } else { raw };
    if raw[0] != b'/' {
        return Err(InvalidPath::new("the path does not start with `/`"));
    }
    if is_simple(raw, merge_slashes) {
        return Ok(Normalized {
            path: Cow::Borrowed(raw),
            quoted: false,
        });
    }

    let mut out = Vec::with_capacity(raw.len());
    let mut state = State::Usual;
    let mut quoted = false;
    let mut i = 0;
    while i < raw.len() {
        let mut ch = raw[i];
        i += 1;
        if ch == b'%' {
            quoted = true;
            let hi = raw.get(i).copied().and_then(hex);
            let lo = raw.get(i + 1).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(InvalidPath::new("a `%` not followed by two hex digits"));
            };
            i += 2;
            ch = (hi << 4) | lo;
            match ch {
                0 => return Err(InvalidPath::new("an encoded NUL byte")),
                // Kept as plain bytes: they must not start an escape, a query or a fragment.
                b'%' | b'#' | b'?' => {
                    out.push(ch);
                    state = State::Usual;
                    continue;
                }
                // Any other decoded byte goes through the state machine like a raw one.
                _ => {}
            }
        } else if ch == b'?' || ch == b'#' {
            break;
        } else if ch == 0 {
            return Err(InvalidPath::new("a NUL byte"));
        }
        state = step(&mut out, state, ch, merge_slashes)?;
    }
    match state {
        State::Dot => {
            out.pop();
        }
        State::DotDot => pop_segment(&mut out)?,
        State::Usual | State::Slash => {}
    }
    Ok(Normalized {
        path: Cow::Owned(out),
        quoted,
    })
}

/// One byte of the path (raw, or decoded from an escape) in state `state`.
fn step(
    out: &mut Vec<u8>,
    state: State,
    ch: u8,
    merge_slashes: bool,
) -> Result<State, InvalidPath> {
    Ok(match (state, ch) {
        (State::Slash, b'/') => {
            if !merge_slashes {
                out.push(b'/');
            }
            State::Slash
        }
        (State::Dot, b'/') => {
            // "/./": drop the dot.
            out.pop();
            State::Slash
        }
        (State::DotDot, b'/') => {
            pop_segment(out)?;
            State::Slash
        }
        (_, b'/') => {
            out.push(b'/');
            State::Slash
        }
        (State::Slash, b'.') => {
            out.push(b'.');
            State::Dot
        }
        (State::Dot, b'.') => {
            out.push(b'.');
            State::DotDot
        }
        (_, _) => {
            out.push(ch);
            State::Usual
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<String, InvalidPath> {
        normalize(raw.as_bytes(), true).map(|n| String::from_utf8_lossy(&n.path).into_owned())
    }

    #[test]
    fn nginx_normal_forms() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/secret", "/secret"),
            ("//secret", "/secret"),
            ("///a//b///", "/a/b/"),
            ("/%73ecret", "/secret"),
            ("/%73%65cret", "/secret"),
            ("/admin/../secret", "/secret"),
            ("/a/./b", "/a/b"),
            ("/a/.", "/a/"),
            ("/a/..", "/"),
            ("/a/b/../../c", "/c"),
            ("/a/%2e%2E/secret", "/secret"),
            ("/a/.%2e/secret", "/secret"),
            ("/%2e/secret", "/secret"),
            ("/secret%2Fx", "/secret/x"),
            ("/a%2F%2Fb", "/a/b"),
            ("/a%2F..%2Fb", "/b"),
            ("/%25", "/%"),
            ("/%2573ecret", "/%73ecret"),
            ("/%3F", "/?"),
            ("/%23x", "/#x"),
            ("/a?b", "/a"),
            ("/a#b", "/a"),
            ("/a/..?b", "/"),
            ("/a/.?b", "/a/"),
            ("/...", "/..."),
            ("/a./b", "/a./b"),
            ("/.a/b", "/.a/b"),
            ("/a/..b", "/a/..b"),
            ("/x.php%0A", "/x.php\n"),
            ("/%C3%A9", "/\u{e9}"),
        ];
        for (raw, want) in cases {
            assert_eq!(norm(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn nginx_rejects() {
        for raw in [
            "/..",
            "/../a",
            "/a/../..",
            "/%2e%2e",
            "/%2E%2E/x",
            "/.%2E/",
            "/a/%2e%2e/%2e%2e/b",
            "/a%00",
            "/a\0",
            "/\0/..",
            "/%zz",
            "/%",
            "/%4",
            "/%4g",
            "a",
            "*",
        ] {
            assert!(norm(raw).is_err(), "{raw} should be rejected");
        }
    }

    #[test]
    fn high_bytes_and_quoted_flag() {
        let n = normalize(b"/%FF", true).unwrap();
        assert_eq!(&*n.path, b"/\xff");
        assert!(n.quoted);
        let n = normalize(b"/plain/path", true).unwrap();
        assert!(matches!(n.path, Cow::Borrowed(_)));
        assert!(!n.quoted);
    }

    #[test]
    fn merge_slashes_off_keeps_them() {
        let n = normalize(b"//a//b", false).unwrap();
        assert_eq!(&*n.path, b"//a//b");
        let n = normalize(b"/a//../b", false).unwrap();
        assert_eq!(&*n.path, b"/a/b");
    }
}
