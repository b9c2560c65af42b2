//! URI normalisation and location matching (`Locations::find`, and the `Locations` service).
//!
//! The input is a raw request path. Checked for every input, with `merge_slashes` on and off:
//!
//! - no panic;
//! - the normalised path equals a straightforward reference model (decode every `%XX`,
//!   split at slashes, resolve `.` and `..` with a stack), and the path is rejected exactly
//!   when the model rejects it (bad escape, a NUL byte, `..` above the root, no leading `/`);
//! - the normalised path starts with `/`, has no `.` or `..` segment and, when slashes are
//!   merged, no `//`;
//! - matching is idempotent: the normalised path, written back as a request path and
//!   matched again, gives the same path, the same location and the same captures;
//! - the service answers `400` exactly when `find` rejects the URI's path, and otherwise
//!   routes to the location `find` names (or `404` when there is none).
#![no_main]

use std::convert::Infallible;
use std::sync::LazyLock;

use http::{Request, Response, StatusCode};
use libfuzzer_sys::fuzz_target;
use tower::util::BoxCloneSyncService;
use tower::{service_fn, ServiceExt};
use tower_upstream::location::{Location, Locations, MatchedLocation};

mod common;

type Svc = BoxCloneSyncService<Request<()>, Response<String>, Infallible>;

/// Every location answers with the id of the location the router matched.
fn svc() -> Svc {
    BoxCloneSyncService::new(service_fn(|req: Request<()>| async move {
        let m = req
            .extensions()
            .get::<MatchedLocation>()
            .expect("set by the router");
        Ok::<_, Infallible>(Response::new(m.id().to_string()))
    }))
}

fn locations(merge_slashes: bool) -> Locations<Svc> {
    Locations::builder()
        .exact("/", svc())
        .exact("/50x.html", svc())
        .prefix("/", svc())
        .prefix("/secret", svc())
        .prefix("/a/b/", svc())
        .prefix_no_regex("/static/", svc())
        .location(
            Location::prefix("/app/", svc())
                .nest(Location::regex(r"\.php$", svc()))
                .nest(Location::prefix("/app/admin", svc())),
        )
        .regex(r"\.(jsp|do)$", svc())
        .regex_nocase(r"^/(?<dir>img|css)/(.*)\.(png|css)$", svc())
        .regex(r"%|\?|#|\n|[\x80-\xff]", svc())
        .named("@fallback", svc())
        .merge_slashes(merge_slashes)
        .build()
        .expect("the fuzz configuration is valid")
}

static MERGED: LazyLock<Locations<Svc>> = LazyLock::new(|| locations(true));
static UNMERGED: LazyLock<Locations<Svc>> = LazyLock::new(|| locations(false));

/// The reference model: nginx's `$uri` as a decode-then-resolve with a stack of segments.
/// `None` where nginx answers `400`.
fn reference(raw: &[u8], merge_slashes: bool) -> Option<Vec<u8>> {
    let raw = if raw.is_empty() { b"/".as_slice() } else { raw };
    if raw[0] != b'/' {
        return None;
    }
    // Bytes of the path, each marked as a separator (`/`) or not. A decoded `%`, `?` or `#`
    // is a plain byte; a raw `?` or `#` ends the path.
    let mut bytes: Vec<(u8, bool)> = Vec::new();
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        i += 1;
        match b {
            b'?' | b'#' => break,
            0 => return None,
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
                let (hi, lo) = (hex(raw.get(i))?, hex(raw.get(i + 1))?);
                i += 2;
                let d = (hi * 16 + lo) as u8;
                if d == 0 {
                    return None;
                }
                bytes.push((d, d == b'/'));
            }
            _ => bytes.push((b, b == b'/')),
        }
    }
    // Segments after the leading slash.
    let mut parts: Vec<Vec<u8>> = vec![Vec::new()];
    for &(b, sep) in &bytes[1..] {
        if sep {
            parts.push(Vec::new());
        } else {
            parts.last_mut().expect("never empty").push(b);
        }
    }
    let last = parts.len() - 1;
    let mut stack: Vec<Vec<u8>> = Vec::new();
    for (n, part) in parts.into_iter().enumerate() {
        let dots = part == b"." || part == b"..";
        match part.as_slice() {
            b"." => {}
            b".." => {
                stack.pop()?;
            }
            b"" if merge_slashes && n != last => {}
            _ => stack.push(part),
        }
        // A path ending in `/.` or `/..` ends with a slash.
        if n == last && dots {
            stack.push(Vec::new());
        }
    }
    let mut out = vec![b'/'];
    out.extend(stack.join(&b'/'));
    Some(out)
}

/// The normalised path written back as a request path: bytes that would not come back as
/// themselves are percent-encoded.
fn reencode(path: &[u8]) -> String {
    let mut out = String::new();
    for &b in path {
        if b.is_ascii_graphic() && !matches!(b, b'%' | b'?' | b'#') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn check(locations: &Locations<Svc>, raw: &str, merge_slashes: bool) {
    let want = reference(raw.as_bytes(), merge_slashes);
    let found = locations.find(raw);
    let m: MatchedLocation = match (found, &want) {
        (Err(_), None) => return,
        (Ok(Some(m)), Some(want)) => {
            assert_eq!(
                m.path(),
                &want[..],
                "normalised {raw:?} (merge {merge_slashes})"
            );
            m
        }
        (Ok(None), _) => unreachable!("`location /` matches every valid path"),
        (got, want) => panic!("{raw:?}: got {got:?}, the model says {want:?}"),
    };
    let path = m.path();
    assert_eq!(path.first(), Some(&b'/'));
    for segment in path.split(|&b| b == b'/').skip(1) {
        assert!(
            segment != b"." && segment != b"..",
            "dot segment in {path:?}"
        );
    }
    if merge_slashes {
        assert!(!path.windows(2).any(|w| w == b"//"), "`//` in {path:?}");
    }
    let again = locations
        .find(&reencode(path))
        .expect("a normalised path is valid")
        .expect("and matches");
    assert_eq!(again.path(), path, "re-normalising {raw:?}");
    assert_eq!(again.id(), m.id(), "re-matching {raw:?}");
    assert_eq!(again.captures_len(), m.captures_len());
    for i in 0..m.captures_len() {
        assert_eq!(again.capture(i), m.capture(i));
    }
}

/// The service answers as `find` decides.
fn check_service(locations: &Locations<Svc>, raw: &str) {
    let Ok(req) = Request::get(raw).body(()) else {
        return;
    };
    let expected = locations.find(req.uri().path());
    let res = common::ready(locations.clone().oneshot(req)).expect("infallible");
    match expected {
        Err(_) => assert_eq!(res.status(), StatusCode::BAD_REQUEST),
        Ok(None) => assert_eq!(res.status(), StatusCode::NOT_FOUND),
        Ok(Some(m)) => {
            assert_eq!(res.status(), StatusCode::OK);
            assert_eq!(res.body(), &m.id().to_string());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let raw = String::from_utf8_lossy(data);
    check(&MERGED, &raw, true);
    check(&UNMERGED, &raw, false);
    check_service(&MERGED, &raw);
});
