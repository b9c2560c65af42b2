//! [`ErrorPages`]: nginx's `error_page` lines.

use std::fmt;
use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{HeaderValue, StatusCode};

use crate::ConfigError;

/// The status of the answer an error page gives (the `=` part of an `error_page` line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorPageStatus {
    /// `error_page 404 /404.html`: the client gets the error's status with the page's
    /// content (or the page's own status if fetching the page failed with `4xx`/`5xx`).
    Error,
    /// `error_page 404 = /404.php`: the status the page's location answers with.
    Page,
    /// `error_page 404 =200 /empty.gif`: this status.
    Fixed(StatusCode),
}

/// Where an error page comes from.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// An internal redirect to this URI (`/50x.html`): matched against the locations again,
    /// as a `GET` (a `HEAD` stays a `HEAD`).
    Uri(PathAndQuery),
    /// An internal redirect to a named location (`@fallback`), method and URI unchanged.
    Named(Arc<str>),
    /// A redirect of the client (`http://example.com/`): `302`, or the fixed 3xx status.
    Redirect(HeaderValue),
}

#[derive(Debug, Clone)]
pub(crate) struct Page {
    pub(crate) target: Target,
    pub(crate) status: ErrorPageStatus,
}

/// nginx's `error_page` directives: which response statuses are replaced by which page.
///
/// Built with [`ErrorPages::builder`], used by [`ErrorPage`](super::ErrorPage). Cloning is
/// cheap (an `Arc`).
///
/// ```
/// use tower_upstream::location::{ErrorPageStatus, ErrorPages};
///
/// // error_page 404 /404.html;
/// // error_page 500 502 503 504 /50x.html;
/// // error_page 418 =200 @teapot;
/// let pages = ErrorPages::builder()
///     .page([404], "/404.html")
///     .page([500, 502, 503, 504], "/50x.html")
///     .page_with([418], ErrorPageStatus::Fixed(http::StatusCode::OK), "@teapot")
///     .build()?;
/// assert!(pages.handles(http::StatusCode::BAD_GATEWAY));
/// assert!(!pages.handles(http::StatusCode::FORBIDDEN));
/// # Ok::<_, tower_upstream::ConfigError>(())
/// ```
#[derive(Clone, Default)]
pub struct ErrorPages {
    /// Indexed by `status - 300`: the page for that status.
    pages: Arc<[Option<Page>]>,
}

impl ErrorPages {
    /// A builder of error pages.
    pub fn builder() -> ErrorPagesBuilder {
        ErrorPagesBuilder::default()
    }

    /// Whether responses with `status` get an error page.
    pub fn handles(&self, status: StatusCode) -> bool {
        self.get(status).is_some()
    }

    /// Whether no status gets an error page.
    pub fn is_empty(&self) -> bool {
        // `build` leaves the table empty when there are no lines.
        self.pages.is_empty()
    }

    pub(crate) fn get(&self, status: StatusCode) -> Option<&Page> {
        let i = status.as_u16().checked_sub(300)?;
        self.pages.get(usize::from(i))?.as_ref()
    }
}

impl fmt::Debug for ErrorPages {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (i, page) in self.pages.iter().enumerate() {
            if let Some(page) = page {
                map.entry(&(300 + i), page);
            }
        }
        map.finish()
    }
}

/// Builder of [`ErrorPages`].
#[derive(Debug, Default)]
pub struct ErrorPagesBuilder {
    lines: Vec<(Vec<u16>, ErrorPageStatus, String)>,
}

impl ErrorPagesBuilder {
    /// `error_page <statuses> <target>`: responses with one of `statuses` get the page
    /// `target` with their own status ([`ErrorPageStatus::Error`]).
    ///
    /// `target` is a URI starting with `/` (an internal redirect, matched against the
    /// locations again), a named location (`@fallback`), or any other URL, which redirects
    /// the client with `302 Found`. A later line for the same status replaces an earlier one.
    pub fn page(self, statuses: impl IntoIterator<Item = u16>, target: &str) -> Self {
        self.page_with(statuses, ErrorPageStatus::Error, target)
    }

    /// `error_page <statuses> =[status] <target>`: as [`page`](Self::page), with the
    /// status of the answer chosen by `status`.
    pub fn page_with(
        mut self,
        statuses: impl IntoIterator<Item = u16>,
        status: ErrorPageStatus,
        target: &str,
    ) -> Self {
        self.lines
            .push((statuses.into_iter().collect(), status, target.to_owned()));
        self
    }

    /// Checks the lines as nginx does.
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidErrorPage`] for a status outside `300..=599` (or 499), a
    /// line without statuses, or an empty or invalid target.
    pub fn build(self) -> Result<ErrorPages, ConfigError> {
        if self.lines.is_empty() {
            return Ok(ErrorPages::default());
        }
        let mut pages: Vec<Option<Page>> = vec![None; 300];
        for (statuses, status, target) in self.lines {
            let err = |reason: String| ConfigError::InvalidErrorPage {
                page: target.clone(),
                reason,
            };
            if statuses.is_empty() {
                return Err(err("no status is given".into()));
            }
            let target = parse_target(&target).map_err(|r| err(r.into()))?;
            for code in statuses {
                if !(300..=599).contains(&code) || code == 499 {
                    return Err(err(format!(
                        "status {code} is not between 300 and 599 (499 excluded)"
                    )));
                }
                pages[usize::from(code - 300)] = Some(Page {
                    target: target.clone(),
                    status,
                });
            }
        }
        Ok(ErrorPages {
            pages: pages.into(),
        })
    }
}

fn parse_target(target: &str) -> Result<Target, &'static str> {
    if target.starts_with('/') {
        if target.contains('#') {
            return Err("a page URI has no fragment");
        }
        PathAndQuery::try_from(target)
            .map(Target::Uri)
            .map_err(|_| "not a valid URI path")
    } else if let Some(name) = target.strip_prefix('@') {
        if name.is_empty() {
            return Err("a named location needs a name");
        }
        Ok(Target::Named(target.into()))
    } else if target.is_empty() {
        Err("the target is empty")
    } else {
        HeaderValue::from_str(target)
            .map(Target::Redirect)
            .map_err(|_| "not a valid Location header value")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_lines_replace_earlier_ones() {
        let pages = ErrorPages::builder()
            .page([404, 500], "/a.html")
            .page([500], "@b")
            .build()
            .unwrap();
        assert!(matches!(
            pages.get(StatusCode::NOT_FOUND).unwrap().target,
            Target::Uri(_)
        ));
        assert!(matches!(
            pages.get(StatusCode::INTERNAL_SERVER_ERROR).unwrap().target,
            Target::Named(_)
        ));
        assert!(pages.get(StatusCode::OK).is_none());
        assert!(!pages.is_empty());
        assert!(ErrorPages::default().is_empty());
    }

    #[test]
    fn nginx_rejects_these() {
        for (statuses, target) in [
            (vec![200], "/x"),
            (vec![600], "/x"),
            (vec![499], "/x"),
            (vec![], "/x"),
            (vec![404], ""),
            (vec![404], "@"),
            (vec![404], "/a b"),
        ] {
            let built = ErrorPages::builder().page(statuses.clone(), target).build();
            assert!(
                matches!(built, Err(ConfigError::InvalidErrorPage { .. })),
                "{statuses:?} {target:?}"
            );
        }
    }
}
