//! The regex locations of one level: all tried in one pass with a [`RegexSet`], the first in
//! configuration order wins.
//!
//! nginx matches with PCRE, on bytes, without UTF-8 mode; here the patterns are compiled
//! with Unicode mode off for the same effect: `.` matches any byte but `\n`, `\w`, `\d`, `\s`
//! and `~*`'s case folding are ASCII-only, and the path may hold any byte. PCRE's `$` also
//! matches before a newline that ends the subject (`/x.php%0A` reaches `~ \.php$` in
//! nginx); the Rust engine's `$` does not, so a path that ends with `\n` is also matched
//! without that newline, which gives PCRE's answer for every pattern that does not consume
//! a newline after `$`.

use regex::bytes::{CaptureLocations, Regex, RegexBuilder, RegexSet, RegexSetBuilder};

/// The compiled regex for one location (for its captures).
pub(crate) fn compile(pattern: &str, nocase: bool) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern)
        .unicode(false)
        .case_insensitive(nocase)
        .build()
}

/// The regex locations of one level.
#[derive(Debug, Clone)]
pub(crate) struct RegexLevel {
    set: RegexSet,
    /// The location id of each pattern of `set`.
    ids: Box<[u32]>,
}

impl RegexLevel {
    /// `patterns`: `(pattern, case-insensitive, location id)` in configuration order. The
    /// patterns have been compiled one by one already, so errors name their location.
    pub(crate) fn new(patterns: &[(&str, bool, u32)]) -> Result<Self, regex::Error> {
        let set = RegexSetBuilder::new(patterns.iter().map(|(p, nocase, _)| {
            if *nocase {
                // A flag set first applies to the whole pattern, every alternative included.
                // (No wrapping group: a `(?x)` pattern may end in a comment.)
                format!("(?i){p}")
            } else {
                (*p).to_owned()
            }
        }))
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(32 << 20)
        .build()?;
        Ok(Self {
            set,
            ids: patterns.iter().map(|(_, _, id)| *id).collect(),
        })
    }

    /// The id of the first location, in configuration order, whose regex matches `path`.
    #[inline]
    pub(crate) fn first_match(&self, path: &[u8]) -> Option<u32> {
        if !self.set.is_match(path) {
            return match path.strip_suffix(b"\n") {
                Some(before) => self.first_in(before),
                None => None,
            };
        }
        let full = self.set.matches(path).iter().next();
        // PCRE's `$` before a final newline: the path without it may match an earlier one.
        let before = match path.strip_suffix(b"\n") {
            Some(before) => self.set.matches(before).iter().next(),
            None => None,
        };
        let index = match (full, before) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(self.ids[index])
    }

    fn first_in(&self, path: &[u8]) -> Option<u32> {
        self.set
            .matches(path)
            .iter()
            .next()
            .map(|index| self.ids[index])
    }
}

/// The capture groups of `regex` on `path`, with PCRE's `$` (see the module docs): the
/// leftmost match of the path, or of the path without a final newline if that one starts
/// earlier.
pub(crate) fn captures(regex: &Regex, path: &[u8]) -> Option<CaptureLocations> {
    let mut full = regex.capture_locations();
    let full_start = regex.captures_read(&mut full, path).map(|m| m.start());
    if let Some(before) = path.strip_suffix(b"\n") {
        let mut trimmed = regex.capture_locations();
        if let Some(m) = regex.captures_read(&mut trimmed, before) {
            if full_start.is_none_or(|start| m.start() <= start) {
                return Some(trimmed);
            }
        }
    }
    full_start.map(|_| full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(patterns: &[(&str, bool)]) -> RegexLevel {
        let with_ids: Vec<_> = patterns
            .iter()
            .enumerate()
            .map(|(i, (p, nocase))| (*p, *nocase, 10 + i as u32))
            .collect();
        RegexLevel::new(&with_ids).unwrap()
    }

    #[test]
    fn first_in_configuration_order_wins() {
        let l = level(&[
            (r"\.php$", false),
            (r"\.(jpg|png)$", true),
            (r"^/img/", false),
        ]);
        assert_eq!(l.first_match(b"/a.php"), Some(10));
        assert_eq!(l.first_match(b"/img/a.PNG"), Some(11));
        assert_eq!(l.first_match(b"/img/a.gif"), Some(12));
        assert_eq!(l.first_match(b"/a.PHP"), None);
        assert_eq!(l.first_match(b"/"), None);
    }

    #[test]
    fn nocase_applies_to_every_alternative() {
        let l = level(&[("a|b", true)]);
        assert_eq!(l.first_match(b"B"), Some(10));
    }

    #[test]
    fn dollar_matches_before_a_final_newline_like_pcre() {
        let l = level(&[(r"^/a$", false), (r"\.php$", false), (r"y$", false)]);
        assert_eq!(l.first_match(b"/x.php\n"), Some(11));
        assert_eq!(l.first_match(b"/x.php\ny"), Some(12));
        assert_eq!(l.first_match(b"/x.php\n\n"), None);
        assert_eq!(l.first_match(b"/a\n"), Some(10));
        // An earlier pattern matching only without the newline still wins.
        let l = level(&[(r"\.php$", false), (r"\n", false)]);
        assert_eq!(l.first_match(b"/x.php\n"), Some(10));
    }

    #[test]
    fn bytes_and_ascii_classes() {
        let l = level(&[(r"^/\w+$", false), (r"^/.$", false)]);
        assert_eq!(l.first_match(b"/abc"), Some(10));
        assert_eq!(l.first_match(b"/\xff"), Some(11));
        assert_eq!(l.first_match("/é".as_bytes()), None); // two bytes, not a word
    }

    #[test]
    fn captures_follow_pcre() {
        let re = compile(r"(.*)\.php$", false).unwrap();
        let caps = captures(&re, b"/x.php\n").unwrap();
        assert_eq!(caps.get(1), Some((0, 2)));
        let re = compile(r"^/(\w+)/", false).unwrap();
        let caps = captures(&re, b"/app/x").unwrap();
        assert_eq!(caps.get(1), Some((1, 4)));
        assert!(captures(&re, b"/").is_none());
    }
}
