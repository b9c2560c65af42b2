//! The request extensions: which location matched ([`MatchedLocation`]), and that a request
//! was redirected inside the gateway ([`InternalRedirect`]).

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use regex::bytes::{CaptureLocations, Regex};

use super::config::{write_location, LocationKind};

/// What is known about a configured location.
#[derive(Debug)]
pub(crate) struct LocationInfo {
    pub(crate) id: usize,
    pub(crate) kind: LocationKind,
    pub(crate) pattern: Box<str>,
    pub(crate) internal: bool,
}

/// Request extension set by [`Locations`](super::Locations): the location that matched, the
/// normalised path it was matched against, and the regex captures.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response};
/// use tower::{service_fn, ServiceExt};
/// use tower_upstream::location::{LocationKind, Locations, MatchedLocation};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let echo = service_fn(|req: Request<()>| async move {
///     let m = req.extensions().get::<MatchedLocation>().unwrap();
///     let ext = String::from_utf8_lossy(m.capture(1).unwrap_or_default()).into_owned();
///     Ok::<_, Infallible>(Response::new(format!("{m} ext={ext}")))
/// });
/// let locations = Locations::builder()
///     .regex_nocase(r"\.(jpg|png)$", echo.clone())
///     .prefix("/", echo)
///     .build()?;
/// let res = locations.oneshot(Request::get("/img/A.PNG").body(())?).await?;
/// assert_eq!(res.body(), r"location ~* \.(jpg|png)$ ext=PNG");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MatchedLocation {
    pub(crate) info: Arc<LocationInfo>,
    pub(crate) path: Bytes,
    pub(crate) quoted: bool,
    pub(crate) captures: Option<Arc<Captured>>,
}

/// The captures of the last regex location that matched.
pub(crate) struct Captured {
    pub(crate) regex: Regex,
    pub(crate) locations: CaptureLocations,
}

impl MatchedLocation {
    /// The kind of location.
    pub fn kind(&self) -> LocationKind {
        self.info.kind
    }

    /// The location's path, prefix, regex or name, as configured.
    pub fn pattern(&self) -> &str {
        &self.info.pattern
    }

    /// The location's position in the configuration, counting nested locations in the
    /// order their blocks appear (depth first), from 0.
    pub fn id(&self) -> usize {
        self.info.id
    }

    /// The normalised path the location was matched against (nginx's `$uri`): decoded,
    /// slashes merged, dot segments resolved. It may hold any byte (`%FF` decodes to 0xFF).
    pub fn path(&self) -> &[u8] {
        &self.path
    }

    /// Group `i` of the last regex location that matched (nginx's `$1`..`$9`; 0 is the
    /// whole match). `None` if there is no such group, it did not take part in the match,
    /// or no regex location matched. Captures are recorded only for regexes that have
    /// groups, so a regex without any has no group 0 either (it costs a second search).
    pub fn capture(&self, i: usize) -> Option<&[u8]> {
        let captured = self.captures.as_deref()?;
        let (start, end) = captured.locations.get(i)?;
        Some(&self.path[start..end])
    }

    /// The named group `name` (`(?<name>...)`) of the last regex location that matched.
    pub fn named_capture(&self, name: &str) -> Option<&[u8]> {
        let captured = self.captures.as_deref()?;
        let i = captured
            .regex
            .capture_names()
            .position(|n| n == Some(name))?;
        self.capture(i)
    }

    /// The number of groups of the last regex location that matched, group 0 included
    /// (0 when no regex location matched, or it has no groups).
    pub fn captures_len(&self) -> usize {
        self.captures.as_deref().map_or(0, |c| c.locations.len())
    }

    /// Whether the raw request path had percent escapes (nginx's `quoted_uri`).
    pub(crate) fn was_quoted(&self) -> bool {
        self.quoted
    }
}

impl fmt::Display for MatchedLocation {
    /// The location as nginx writes it: `location = /404.html`, `location ~* \.jpg$`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, self.info.kind, &self.info.pattern)
    }
}

impl fmt::Debug for MatchedLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let captures: Vec<_> = (0..self.captures_len())
            .map(|i| self.capture(i).map(String::from_utf8_lossy))
            .collect();
        f.debug_struct("MatchedLocation")
            .field("id", &self.info.id)
            .field("kind", &self.info.kind)
            .field("pattern", &self.info.pattern)
            .field("path", &String::from_utf8_lossy(&self.path))
            .field("captures", &captures)
            .finish()
    }
}

/// Request extension marking a request that the gateway itself redirected (nginx's internal
/// redirect), such as the one [`ErrorPage`](super::ErrorPage) sends for an error page.
///
/// Only such requests reach [`internal`](super::Location::internal) locations, and only
/// they can name a [named location](super::Location::named): [`Locations`](super::Locations)
/// sends a request carrying `InternalRedirect::named("@fallback")` straight to
/// `location @fallback`, whatever its path (an unknown name gets `500`, as in nginx).
/// Clients cannot set request extensions, so they cannot reach either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InternalRedirect {
    named: Option<Arc<str>>,
}

impl InternalRedirect {
    /// A redirect to the request's (new) URI, matched against the locations as usual.
    pub fn uri() -> Self {
        Self::default()
    }

    /// A redirect to the named location `name` (with its `@`).
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        Self {
            named: Some(name.into()),
        }
    }

    /// The named location this redirect goes to, if any.
    pub fn named_location(&self) -> Option<&str> {
        self.named.as_deref()
    }
}
