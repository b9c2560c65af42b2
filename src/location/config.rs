//! One `location` block: its kind, pattern, target service and nested locations.

use std::fmt;

/// The kind of a `location`, written in nginx as a modifier before the pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LocationKind {
    /// `location = /path`: the path must be exactly this; wins at once.
    Exact,
    /// `location /prefix`: the longest matching prefix is remembered; regexes may still win.
    Prefix,
    /// `location ^~ /prefix`: a prefix that, when it is the longest match, wins over regexes.
    PrefixNoRegex,
    /// `location ~ regex`: case-sensitive regex.
    Regex,
    /// `location ~* regex`: case-insensitive regex.
    RegexNoCase,
    /// `location @name`: reachable only by an internal redirect (see [`InternalRedirect`]).
    ///
    /// [`InternalRedirect`]: super::InternalRedirect
    Named,
}

impl LocationKind {
    /// The nginx modifier: `=`, `^~`, `~`, `~*`, or `""` for prefixes and named locations.
    pub const fn modifier(self) -> &'static str {
        match self {
            Self::Exact => "=",
            Self::Prefix | Self::Named => "",
            Self::PrefixNoRegex => "^~",
            Self::Regex => "~",
            Self::RegexNoCase => "~*",
        }
    }

    /// Whether locations of this kind are regexes.
    pub const fn is_regex(self) -> bool {
        matches!(self, Self::Regex | Self::RegexNoCase)
    }

    /// Whether the pattern of this kind is a literal path the request path starts with.
    pub(crate) const fn is_static(self) -> bool {
        matches!(self, Self::Exact | Self::Prefix | Self::PrefixNoRegex)
    }
}

/// Writes a location as nginx does: `location ~* \.jpg$`.
pub(crate) fn write_location(
    f: &mut fmt::Formatter<'_>,
    kind: LocationKind,
    pattern: &str,
) -> fmt::Result {
    match kind.modifier() {
        "" => write!(f, "location {pattern}"),
        modifier => write!(f, "location {modifier} {pattern}"),
    }
}

/// One `location` block: a pattern, the service that handles the requests it matches, and
/// its nested locations.
///
/// Build a [`Locations`](super::Locations) from these with
/// [`Builder::location`](super::Builder::location), or with the builder's shortcuts.
///
/// ```
/// use tower::service_fn;
/// use tower_upstream::location::Location;
/// # let svc = service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) });
/// // location /app/ { location ~ \.php$ { ... } location /app/static/ { ... } }
/// let app = Location::prefix("/app/", svc.clone())
///     .nest(Location::regex(r"\.php$", svc.clone()))
///     .nest(Location::prefix("/app/static/", svc));
/// assert_eq!(app.to_string(), "location /app/");
/// ```
pub struct Location<S> {
    pub(crate) kind: LocationKind,
    pub(crate) pattern: String,
    pub(crate) service: S,
    pub(crate) internal: bool,
    pub(crate) children: Vec<Location<S>>,
}

impl<S> Location<S> {
    fn new(kind: LocationKind, pattern: impl Into<String>, service: S) -> Self {
        Self {
            kind,
            pattern: pattern.into(),
            service,
            internal: false,
            children: Vec::new(),
        }
    }

    /// `location = path`.
    pub fn exact(path: impl Into<String>, service: S) -> Self {
        Self::new(LocationKind::Exact, path, service)
    }

    /// `location prefix`.
    pub fn prefix(prefix: impl Into<String>, service: S) -> Self {
        Self::new(LocationKind::Prefix, prefix, service)
    }

    /// `location ^~ prefix`: when this is the longest matching prefix, regexes are not tried.
    pub fn prefix_no_regex(prefix: impl Into<String>, service: S) -> Self {
        Self::new(LocationKind::PrefixNoRegex, prefix, service)
    }

    /// `location ~ regex` (case-sensitive). The syntax is the `regex` crate's; see the
    /// [module docs](super#differences-from-nginx) for how it differs from PCRE.
    pub fn regex(pattern: impl Into<String>, service: S) -> Self {
        Self::new(LocationKind::Regex, pattern, service)
    }

    /// `location ~* regex` (ASCII case-insensitive).
    pub fn regex_nocase(pattern: impl Into<String>, service: S) -> Self {
        Self::new(LocationKind::RegexNoCase, pattern, service)
    }

    /// `location @name`: a named location, reached only by an internal redirect (for
    /// example from [`ErrorPage`](super::ErrorPage)). The name includes the `@`.
    pub fn named(name: impl Into<String>, service: S) -> Self {
        Self::new(LocationKind::Named, name, service)
    }

    /// Adds a nested location, as a `location` block inside this one.
    ///
    /// As in nginx, only prefix and regex locations can have nested locations, named
    /// locations cannot be nested, and a nested prefix or exact location must start with
    /// the pattern of the location around it; [`Builder::build`](super::Builder::build)
    /// checks this.
    pub fn nest(mut self, child: Location<S>) -> Self {
        self.children.push(child);
        self
    }

    /// nginx's `internal`: only internal redirects (such as error pages) reach this
    /// location; a client's request that matches it gets `404 Not Found`.
    pub fn internal(mut self) -> Self {
        self.internal = true;
        self
    }

    /// The kind of location.
    pub fn kind(&self) -> LocationKind {
        self.kind
    }

    /// The path, prefix, regex or name, as given.
    pub fn pattern(&self) -> &str {
        &self.pattern
    }
}

impl<S> fmt::Display for Location<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_location(f, self.kind, &self.pattern)
    }
}

impl<S> fmt::Debug for Location<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Location")
            .field("kind", &self.kind)
            .field("pattern", &self.pattern)
            .field("internal", &self.internal)
            .field("children", &self.children)
            .finish_non_exhaustive()
    }
}
