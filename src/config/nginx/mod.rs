//! An importer for nginx configuration files: the subset a load-balancing gateway uses,
//! turned into a [`GatewayConfig`], with a [`Report`] of everything it did not apply.
//!
//! The file is read with nginx's syntax (words, quotes and escapes, `;`, `{ }` blocks, `#`
//! comments). Each directive is then either **applied** to the model, **ignored** because
//! it does not apply to this gateway, **unsupported** but harmless to the rest (the
//! location answers `502`, an included file is not read), or **rejected**, which makes the
//! import fail. Nothing is skipped without an entry in the report, and every entry has the
//! line the directive starts on.
//!
//! # Applied
//!
//! | context | directives |
//! |---|---|
//! | `http` | `upstream`, `server`, and the `server` settings below (inherited by the server) |
//! | `upstream` | `server` with `weight=`, `max_fails=`, `fail_timeout=`, `max_conns=`, `backup`, `down` (and nginx Plus's `route=`, `slow_start=`); `ip_hash`; `hash $key consistent` (`$request_uri`, `$http_*`, `$cookie_*`, `$arg_*`); `least_conn`; `random [two [least_conn]]` |
//! | `server` | `listen` (`addr:port`, `port`, `addr`), `server_name`, `keepalive_requests` (also in `http`; for the server loop), `location`, `root`, `index`, `proxy_set_header`, `error_page`, `client_max_body_size` |
//! | `location` | `proxy_pass http://…` (an upstream's name, else `host[:port]`, which becomes an upstream of one peer), `return`, `internal`, nested `location`, and the settings above |
//!
//! A `proxy_set_header` for a hop-by-hop header (`Upgrade`, `Connection`, ...) is not
//! passed on: WebSocket upgrades are always tunnelled and peer connections kept alive (an
//! ignored entry says so). It still replaces the inherited `proxy_set_header` lines, as in
//! nginx.
//!
//! # Ignored: not applicable
//!
//! Process and logging settings (`user`, `worker_processes`, `worker_rlimit_nofile`, `pid`,
//! `error_log`, `access_log`, `log_format`, the `events` block), socket and buffer tuning
//! (`sendfile`, `tcp_nopush`, `tcp_nodelay`, `client_header_buffer_size`,
//! `large_client_header_buffers`, `client_body_buffer_size`, `proxy_buffering`,
//! `proxy_buffer_size`, `proxy_buffers`, `proxy_busy_buffers_size`, the `*_hash_*_size`
//! directives), client connection timeouts (`keepalive_timeout`, `keepalive_requests` in a
//! `location`, `send_timeout`, `client_header_timeout`, `client_body_timeout`), compression
//! (`gzip*`), content types (`include …mime.types`, `types`, `default_type`),
//! `server_tokens`, `proxy_http_version` (peers always get HTTP/1.1), the `upstream`
//! connection settings `keepalive*` and `zone`, and the `listen` parameters `default_server`
//! and `default`.
//!
//! # Unsupported, reported
//!
//! - A location whose content handler this crate does not have (`fastcgi_pass`,
//!   `uwsgi_pass`, `scgi_pass`, `grpc_pass`, `memcached_pass`) answers `502 Bad Gateway`
//!   with a warning logged (nginx answers the same when that backend is down); the other
//!   directives of that handler in the location (`fastcgi_*`, `include`, ...) are listed.
//! - Any other `include`: the file is not read.
//!
//! # Rejected
//!
//! Everything else: any other directive (`rewrite`, `if`, `try_files`, `alias`, `auth_*`,
//! `ssl_*`, `proxy_cache*`, …), a directive where nginx does not allow it, wrong arguments,
//! `listen … ssl` or `http2`, `https://` or variables in `proxy_pass`, a second `server`
//! block. The import fails with an [`ImportError::Rejected`] whose report lists all of
//! them. (The model built from an accepted import can still fail to [build], for example
//! on a regex the `regex` crate does not accept.)
//!
//! [build]: super::GatewayConfig::build
//!
//! # Example
//!
//! ```
//! use tower_upstream::config::nginx::{self, Outcome};
//!
//! let text = "\
//! http {
//!     upstream tserver { server 127.0.0.1:18081 weight=1; server 127.0.0.1:18082 backup; }
//!     server {
//!         location ~ \\.php$ { fastcgi_pass 127.0.0.1:9000; include fcgi.conf; }
//!         location / { proxy_pass http://tserver; }
//!     }
//! }";
//! let imported = nginx::import(text)?;
//! let entries: Vec<_> = imported.report.iter().map(|e| (e.line(), e.directive(), e.outcome())).collect();
//! assert_eq!(
//!     entries,
//!     [(4, "fastcgi_pass", Outcome::Unsupported), (4, "include", Outcome::Unsupported)]
//! );
//! assert!(imported.config.upstreams[0].peers[1].backup);
//!
//! let err = nginx::import("http {\n server {\n  location / {\n   rewrite ^ /x;\n }}}").unwrap_err();
//! assert_eq!(
//!     err.to_string(),
//!     "the nginx configuration was rejected:\nline 4: rewrite: rejected: unsupported directive\n"
//! );
//! # Ok::<_, nginx::ImportError>(())
//! ```

mod import;
mod parse;

use std::fmt;
use std::path::{Path, PathBuf};

use super::GatewayConfig;

/// Imports an nginx configuration. See the [module docs](self) for what is supported.
///
/// # Errors
///
/// [`ImportError::Syntax`] for a file nginx could not read, [`ImportError::Rejected`] when
/// a directive cannot be honoured.
pub fn import(text: &str) -> Result<Import, ImportError> {
    let directives = parse::parse(text).map_err(|e| ImportError::Syntax {
        line: e.line,
        message: e.message,
    })?;
    import::import(&directives)
}

/// Reads and imports the nginx configuration at `path`.
///
/// # Errors
///
/// As [`import`], and [`ImportError::Read`] when the file cannot be read as UTF-8 text.
pub fn import_file(path: impl AsRef<Path>) -> Result<Import, ImportError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_owned(),
        source,
    })?;
    import(&text)
}

/// A successful import: the model, and what was not applied.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Import {
    /// The configuration.
    pub config: GatewayConfig,
    /// The directives that were ignored or are unsupported (none are rejected).
    pub report: Report,
}

/// What happened to the directives that were not applied, in file order.
///
/// `Display` writes one line per entry: `line 27: gzip_min_length: ignored: responses are
/// not compressed`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    entries: Vec<ReportEntry>,
}

impl Report {
    /// The entries, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, ReportEntry> {
        self.entries.iter()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether every directive was applied.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries with this outcome.
    pub fn with_outcome(&self, outcome: Outcome) -> impl Iterator<Item = &ReportEntry> {
        self.entries.iter().filter(move |e| e.outcome == outcome)
    }

    pub(crate) fn push(&mut self, entry: ReportEntry) {
        self.entries.push(entry);
    }

    pub(crate) fn sort(&mut self) {
        // Stable: entries of one line keep the order they were made in.
        self.entries.sort_by_key(|e| e.line);
    }
}

impl<'a> IntoIterator for &'a Report {
    type Item = &'a ReportEntry;
    type IntoIter = std::slice::Iter<'a, ReportEntry>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

/// One directive that was not applied: where, which, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEntry {
    line: usize,
    directive: String,
    outcome: Outcome,
    message: String,
}

impl ReportEntry {
    pub(crate) fn new(
        line: usize,
        directive: impl Into<String>,
        outcome: Outcome,
        message: impl Into<String>,
    ) -> Self {
        Self {
            line,
            directive: directive.into(),
            outcome,
            message: message.into(),
        }
    }

    /// The line the directive starts on (from 1).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The directive's name (`gzip`, `fastcgi_pass`), or a parameter (`listen
    /// default_server`).
    pub fn directive(&self) -> &str {
        &self.directive
    }

    /// What happened to it.
    pub fn outcome(&self) -> Outcome {
        self.outcome
    }

    /// Why.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ReportEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}: {}: {}: {}",
            self.line, self.directive, self.outcome, self.message
        )
    }
}

/// What happened to a directive that was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// It does not apply to this gateway (logging, buffer sizes, compression, ...).
    Ignored,
    /// Not supported, with a contained effect: its location answers `502`, or an included
    /// file is not read.
    Unsupported,
    /// It cannot be honoured: the import fails.
    Rejected,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Ignored => "ignored",
            Self::Unsupported => "unsupported",
            Self::Rejected => "rejected",
        })
    }
}

/// Why an nginx configuration could not be imported.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid nginx syntax.
    #[error("line {line}: {message}")]
    Syntax {
        /// The line nginx would name.
        line: usize,
        /// nginx's message (`unexpected "}"`).
        message: String,
    },
    /// Directives that cannot be honoured; the report lists them (and the rest).
    #[error("the nginx configuration was rejected:\n{}", Rejected(report))]
    Rejected {
        /// Every entry, rejected ones included.
        report: Report,
    },
}

/// Writes only the rejected entries of a report.
struct Rejected<'a>(&'a Report);

impl fmt::Display for Rejected<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in self.0.with_outcome(Outcome::Rejected) {
            writeln!(f, "{entry}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
