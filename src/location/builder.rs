//! [`Builder`]: locations in, a checked and compiled [`Locations`] out.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use super::config::{Location, LocationKind};
use super::matched::LocationInfo;
use super::matcher::{Level, Loc, Matcher};
use super::regexes::{compile, RegexLevel};
use super::tree::Slot;
use super::Locations;
use crate::ConfigError;

/// Builder of [`Locations`], from [`Locations::builder`].
///
/// Locations are added in configuration order, which matters only for regexes: the first
/// regex that matches wins, as in nginx.
pub struct Builder<S> {
    locations: Vec<Location<S>>,
    merge_slashes: bool,
}

impl<S> Default for Builder<S> {
    fn default() -> Self {
        Self {
            locations: Vec::new(),
            merge_slashes: true,
        }
    }
}

impl<S> fmt::Debug for Builder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("locations", &self.locations)
            .field("merge_slashes", &self.merge_slashes)
            .finish()
    }
}

impl<S> Builder<S> {
    /// Adds a location, with any nested locations it has.
    pub fn location(mut self, location: Location<S>) -> Self {
        self.locations.push(location);
        self
    }

    /// `location = path { ... }`
    pub fn exact(self, path: impl Into<String>, service: S) -> Self {
        self.location(Location::exact(path, service))
    }

    /// `location prefix { ... }`
    pub fn prefix(self, prefix: impl Into<String>, service: S) -> Self {
        self.location(Location::prefix(prefix, service))
    }

    /// `location ^~ prefix { ... }`
    pub fn prefix_no_regex(self, prefix: impl Into<String>, service: S) -> Self {
        self.location(Location::prefix_no_regex(prefix, service))
    }

    /// `location ~ regex { ... }`
    pub fn regex(self, pattern: impl Into<String>, service: S) -> Self {
        self.location(Location::regex(pattern, service))
    }

    /// `location ~* regex { ... }`
    pub fn regex_nocase(self, pattern: impl Into<String>, service: S) -> Self {
        self.location(Location::regex_nocase(pattern, service))
    }

    /// `location @name { ... }` (the name includes the `@`).
    pub fn named(self, name: impl Into<String>, service: S) -> Self {
        self.location(Location::named(name, service))
    }

    /// nginx's `merge_slashes` (default `true`): whether `//a///b` is matched as `/a/b`.
    ///
    /// ```
    /// # use tower_upstream::location::Locations;
    /// # let svc = tower::service_fn(|_: http::Request<()>| async { Ok::<_, std::convert::Infallible>(http::Response::new(())) });
    /// let locations = Locations::builder().prefix("/a/", svc).merge_slashes(false).build()?;
    /// assert!(locations.find("//a/x")?.is_none());
    /// # Ok::<_, Box<dyn std::error::Error>>(())
    /// ```
    pub fn merge_slashes(mut self, merge: bool) -> Self {
        self.merge_slashes = merge;
        self
    }

    /// Checks the locations as nginx checks its configuration and compiles them.
    ///
    /// # Errors
    ///
    /// - [`ConfigError::InvalidLocationRegex`]: a regex does not compile;
    /// - [`ConfigError::DuplicateLocation`]: two exact, two prefix (`^~` or not) or two
    ///   named locations with the same pattern at the same level;
    /// - [`ConfigError::InvalidLocation`]: a location nested where nginx does not allow it
    ///   (inside an exact or named location, a named location not at the top, a nested
    ///   prefix outside its parent's) or a named location without `@`.
    pub fn build(self) -> Result<Locations<S>, ConfigError> {
        let mut compiler = Compiler::default();
        let top = compiler.level(self.locations, None)?;
        let (locs, services) = compiler
            .locs
            .into_iter()
            .map(|slot| slot.expect("every location is compiled"))
            .unzip::<_, _, Vec<_>, Vec<_>>();
        Ok(Locations::from_parts(
            Matcher {
                top,
                locs: locs.into(),
                named: compiler.named,
                merge_slashes: self.merge_slashes,
            },
            services.into(),
        ))
    }
}

/// Walks the locations depth first, giving ids in configuration order.
struct Compiler<S> {
    locs: Vec<Option<(Loc, S)>>,
    named: HashMap<Box<str>, u32>,
}

impl<S> Default for Compiler<S> {
    fn default() -> Self {
        Self {
            locs: Vec::new(),
            named: HashMap::new(),
        }
    }
}

fn invalid(location: &Location<impl Sized>, reason: impl Into<String>) -> ConfigError {
    ConfigError::InvalidLocation {
        location: location.to_string(),
        reason: reason.into(),
    }
}

impl<S> Compiler<S> {
    /// Compiles the locations of one level (`parent`: the location they are nested in).
    fn level(
        &mut self,
        locations: Vec<Location<S>>,
        parent: Option<(LocationKind, &str)>,
    ) -> Result<Level, ConfigError> {
        let mut level = Level::default();
        let mut regexes = Vec::new();
        for location in locations {
            self.check_nesting(&location, parent)?;
            let id = u32::try_from(self.locs.len()).expect("fewer than 2^32 locations");
            self.locs.push(None);
            let name = || location.to_string();
            match location.kind {
                LocationKind::Exact | LocationKind::Prefix | LocationKind::PrefixNoRegex => {
                    let slot = if location.kind == LocationKind::Exact {
                        Slot::Exact
                    } else {
                        Slot::Prefix
                    };
                    if level
                        .tree
                        .insert(location.pattern.as_bytes(), slot, id)
                        .is_some()
                    {
                        return Err(ConfigError::DuplicateLocation { location: name() });
                    }
                }
                LocationKind::Regex | LocationKind::RegexNoCase => {
                    regexes.push(id);
                }
                LocationKind::Named => {
                    if self
                        .named
                        .insert(location.pattern.as_str().into(), id)
                        .is_some()
                    {
                        return Err(ConfigError::DuplicateLocation { location: name() });
                    }
                }
            }
            self.compile(id, location)?;
        }
        if !regexes.is_empty() {
            let patterns: Vec<_> = regexes
                .iter()
                .map(|&id| {
                    let info = &self.loc(id).info;
                    (&*info.pattern, info.kind == LocationKind::RegexNoCase, id)
                })
                .collect();
            level.regexes = Some(RegexLevel::new(&patterns).map_err(|error| {
                ConfigError::InvalidLocationRegex {
                    location: "(the regex locations together)".into(),
                    error: error.to_string(),
                }
            })?);
        }
        Ok(level)
    }

    fn loc(&self, id: u32) -> &Loc {
        &self.locs[id as usize].as_ref().expect("compiled").0
    }

    /// nginx's rules for where a location may be.
    fn check_nesting(
        &self,
        location: &Location<S>,
        parent: Option<(LocationKind, &str)>,
    ) -> Result<(), ConfigError> {
        if location.kind == LocationKind::Named && !location.pattern.starts_with('@') {
            return Err(invalid(location, "a named location's name starts with `@`"));
        }
        let Some((parent_kind, parent_pattern)) = parent else {
            return Ok(());
        };
        match parent_kind {
            LocationKind::Exact => {
                return Err(invalid(location, "it cannot be inside an exact location"))
            }
            LocationKind::Named => {
                return Err(invalid(location, "it cannot be inside a named location"))
            }
            _ => {}
        }
        if location.kind == LocationKind::Named {
            return Err(invalid(
                location,
                "named locations must be at the top level",
            ));
        }
        if !location.kind.is_regex() && !location.pattern.starts_with(parent_pattern) {
            return Err(invalid(
                location,
                format!("it is outside the location around it (`{parent_pattern}`)"),
            ));
        }
        Ok(())
    }

    /// Compiles one location and its nested locations into slot `id`.
    fn compile(&mut self, id: u32, location: Location<S>) -> Result<(), ConfigError> {
        let Location {
            kind,
            pattern,
            service,
            internal,
            children,
        } = location;
        let regex = if kind.is_regex() {
            let regex = compile(&pattern, kind == LocationKind::RegexNoCase).map_err(|e| {
                ConfigError::InvalidLocationRegex {
                    location: format!("location {} {pattern}", kind.modifier()),
                    error: e.to_string(),
                }
            })?;
            Some(regex)
        } else {
            None
        };
        let children = if children.is_empty() {
            None
        } else {
            Some(self.level(children, Some((kind, &pattern)))?)
        };
        let loc = Loc {
            info: Arc::new(LocationInfo {
                id: id as usize,
                kind,
                pattern: pattern.into(),
                internal,
            }),
            noregex: kind == LocationKind::PrefixNoRegex,
            regex,
            children: children.filter(|l| !l.tree.is_empty() || l.regexes.is_some()),
        };
        self.locs[id as usize] = Some((loc, service));
        Ok(())
    }
}
