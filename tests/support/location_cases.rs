//! Location configurations and request paths with the location nginx chooses, shared by
//! `tests/locations.rs` (which checks `Locations` against these expectations) and
//! `tests/nginx_parity.rs` (which checks them, and `Locations`, against a real nginx).
//!
//! Include with `#[path = "support/location_cases.rs"] mod cases;`.
#![allow(dead_code, unreachable_pub)]

use tower_upstream::location::{Location, Locations};

/// A location: kind, pattern, the name it answers with, nested locations.
#[derive(Debug)]
pub struct L {
    pub kind: Kind,
    pub pattern: &'static str,
    pub name: &'static str,
    pub nested: &'static [L],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Exact,
    Prefix,
    NoRegex,
    Regex,
    RegexNoCase,
    Named,
}

const fn l(kind: Kind, pattern: &'static str, name: &'static str) -> L {
    L {
        kind,
        pattern,
        name,
        nested: &[],
    }
}

const fn nest(kind: Kind, pattern: &'static str, name: &'static str, nested: &'static [L]) -> L {
    L {
        kind,
        pattern,
        name,
        nested,
    }
}

use Kind::*;

/// One `server {}`: its locations and `merge_slashes`.
#[derive(Debug)]
pub struct Config {
    pub name: &'static str,
    pub merge_slashes: bool,
    pub locations: &'static [L],
}

/// nginx's documentation example (`location = /`, `/`, `/documents/`, `^~ /images/`,
/// `~* \.(gif|jpg|jpeg)$`), plus prefixes for the normalisation cases.
pub const DOCS: Config = Config {
    name: "docs",
    merge_slashes: true,
    locations: &[
        l(Exact, "/", "exact-root"),
        l(Prefix, "/", "root"),
        l(Prefix, "/documents/", "documents"),
        l(NoRegex, "/images/", "images"),
        l(RegexNoCase, r"\.(gif|jpg|jpeg)$", "gif-jpg"),
        l(Prefix, "/secret", "secret"),
        l(Prefix, "/admin/", "admin"),
    ],
};

/// Regex order and case, regexes against prefixes, an exact location.
pub const REGEX: Config = Config {
    name: "regex",
    merge_slashes: true,
    locations: &[
        l(Regex, r"\.php$", "php"),
        l(Regex, r"\.(php|html)$", "php-html"),
        l(RegexNoCase, r"\.PHP$", "php-nocase"),
        l(Prefix, "/x/", "x"),
        l(Regex, "^/x/", "x-regex"),
        l(Prefix, "/", "root"),
        l(Exact, "/x/exact.php", "exact-php"),
    ],
};

/// Nested locations: inside a prefix, a `^~` prefix, and a regex.
pub const NESTED: Config = Config {
    name: "nested",
    merge_slashes: true,
    locations: &[
        nest(
            Prefix,
            "/a/",
            "a",
            &[
                l(Regex, r"\.js$", "a-js"),
                nest(NoRegex, "/a/b/", "a-b", &[l(Regex, r"\.css$", "a-b-css")]),
                l(Prefix, "/a/c/", "a-c"),
            ],
        ),
        l(Regex, r"\.css$", "css"),
        l(Regex, r"\.js$", "js"),
        nest(NoRegex, "/n/", "n", &[l(Regex, r"\.js$", "n-js")]),
        nest(Regex, "^/r/", "r", &[l(Regex, r"\.txt$", "r-txt")]),
        l(Prefix, "/", "root"),
    ],
};

/// The seed's server block (`shared/seed/nginx.conf`), sloppy regexes included.
pub const SEED: Config = Config {
    name: "seed",
    merge_slashes: true,
    locations: &[
        l(Regex, ".*.(php|php5)?$", "php"),
        l(Regex, ".(jsp|jspx|do|htm)?$", "jsp"),
        l(Regex, "(/dwr/)?", "dwr"),
        l(Prefix, "/", "root"),
        l(Exact, "/404.html", "404"),
        l(Exact, "/50x.html", "50x"),
    ],
};

/// No `location /`: unmatched paths get 404; a named location is not reachable by path.
pub const SPARSE: Config = Config {
    name: "sparse",
    merge_slashes: true,
    locations: &[
        l(Prefix, "/api/", "api"),
        l(Exact, "/", "exact-root"),
        l(Named, "@fallback", "fallback"),
    ],
};

/// `merge_slashes off`.
pub const NO_MERGE: Config = Config {
    name: "no-merge",
    merge_slashes: false,
    locations: &[l(Prefix, "/a/", "a"), l(Prefix, "/", "root")],
};

pub const CONFIGS: &[&Config] = &[&DOCS, &REGEX, &NESTED, &SEED, &SPARSE, &NO_MERGE];

/// What nginx answers: the location's name (status 200), or a status of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Loc(&'static str),
    Status(u16),
}

use Want::{Loc, Status};

/// `(config, raw request path, answer)`.
pub const CASES: &[(&Config, &str, Want)] = &[
    // Precedence (nginx's documentation example).
    (&DOCS, "/", Loc("exact-root")),
    (&DOCS, "/index.html", Loc("root")),
    (&DOCS, "/documents/document.html", Loc("documents")),
    (&DOCS, "/images/1.gif", Loc("images")),
    (&DOCS, "/documents/1.jpg", Loc("gif-jpg")),
    (&DOCS, "/documents/1.JPG", Loc("gif-jpg")),
    (&DOCS, "/images/x.JPG", Loc("images")),
    (&DOCS, "/imagesx.jpg", Loc("gif-jpg")),
    (&DOCS, "/images", Loc("root")),
    (&DOCS, "/admin", Loc("root")),
    (&DOCS, "/admin/x", Loc("admin")),
    (&DOCS, "/secretary", Loc("secret")),
    (&DOCS, "/documents/1.gif?x=1", Loc("gif-jpg")),
    (&DOCS, "/documents/x?y.jpg", Loc("documents")),
    // Normalisation: decoding, merged slashes, dot segments.
    (&DOCS, "/secret", Loc("secret")),
    (&DOCS, "//secret", Loc("secret")),
    (&DOCS, "///secret//x", Loc("secret")),
    (&DOCS, "/%73ecret", Loc("secret")),
    (&DOCS, "/%73%65%63%72%65%74", Loc("secret")),
    (&DOCS, "/./secret", Loc("secret")),
    (&DOCS, "/admin/../secret", Loc("secret")),
    (&DOCS, "/admin/./../secret", Loc("secret")),
    (&DOCS, "/images/../documents/1.gif", Loc("gif-jpg")),
    (&DOCS, "/%69mages/1.gif", Loc("images")),
    (&DOCS, "/x.jpg%3F", Loc("root")),
    (&DOCS, "/a%2F..%2Fsecret", Loc("secret")),
    // Encoded traversal attempts.
    (&DOCS, "/admin/%2e%2e/secret", Loc("secret")),
    (&DOCS, "/admin/%2E%2E%2Fsecret", Loc("secret")),
    (&DOCS, "/admin/.%2e/secret", Loc("secret")),
    (&DOCS, "/images/%2e%2e/secret", Loc("secret")),
    (&DOCS, "/images%2F..%2F..%2Fsecret", Status(400)),
    // Above the root, and malformed escapes: 400.
    (&DOCS, "/..", Status(400)),
    (&DOCS, "/../secret", Status(400)),
    (&DOCS, "/%2e%2e/secret", Status(400)),
    (&DOCS, "/%2E%2E%2Fsecret", Status(400)),
    (&DOCS, "/.%2e/secret", Status(400)),
    (&DOCS, "/admin/../../secret", Status(400)),
    (&DOCS, "/secret/%2e%2e/%2e%2e/etc/passwd", Status(400)),
    (&DOCS, "/secret%00", Status(400)),
    (&DOCS, "/%zz", Status(400)),
    (&DOCS, "/secret%2", Status(400)),
    // Regex order, case, and regexes against prefixes.
    (&REGEX, "/a.php", Loc("php")),
    (&REGEX, "/a.html", Loc("php-html")),
    (&REGEX, "/a.PHP", Loc("php-nocase")),
    (&REGEX, "/A.Php", Loc("php-nocase")),
    (&REGEX, "/x/a.php", Loc("php")),
    (&REGEX, "/x/a", Loc("x-regex")),
    (&REGEX, "/x/exact.php", Loc("exact-php")),
    (&REGEX, "//x//exact.php", Loc("exact-php")),
    (&REGEX, "/x.PHP5", Loc("root")),
    (&REGEX, "/a.php/", Loc("root")),
    (&REGEX, "/a%2Ephp", Loc("php")),
    // PCRE's `$` matches before a final newline.
    (&REGEX, "/a.php%0A", Loc("php")),
    (&REGEX, "/a.php%0A%0A", Loc("root")),
    (&REGEX, "/a.php%0Ax", Loc("root")),
    // Nested locations.
    (&NESTED, "/a/x", Loc("a")),
    (&NESTED, "/a/x.js", Loc("a-js")),
    (&NESTED, "/a/x.css", Loc("css")),
    (&NESTED, "/a/b/x", Loc("a-b")),
    (&NESTED, "/a/b/x.css", Loc("a-b-css")),
    // A nested `^~` stops the nested regexes, not those around its parent.
    (&NESTED, "/a/b/x.js", Loc("js")),
    (&NESTED, "/a/c/x", Loc("a-c")),
    (&NESTED, "/a/c/x.js", Loc("a-js")),
    (&NESTED, "/n/x.js", Loc("n-js")),
    (&NESTED, "/n/x.css", Loc("n")),
    (&NESTED, "/r/x", Loc("r")),
    (&NESTED, "/r/x.txt", Loc("r-txt")),
    (&NESTED, "/z.css", Loc("css")),
    (&NESTED, "/a/../n/x.js", Loc("n-js")),
    (&NESTED, "/n/../a/b/x.css", Loc("a-b-css")),
    // The seed: `.*.(php|php5)?$` matches every path.
    (&SEED, "/", Loc("php")),
    (&SEED, "/index.jsp", Loc("php")),
    (&SEED, "/dwr/engine.js", Loc("php")),
    (&SEED, "/index.html", Loc("php")),
    (&SEED, "/404.html", Loc("404")),
    (&SEED, "/50x.html", Loc("50x")),
    (&SEED, "/x/../50x.html", Loc("50x")),
    (&SEED, "/404.html/", Loc("php")),
    // No `location /`.
    (&SPARSE, "/", Loc("exact-root")),
    (&SPARSE, "/api/x", Loc("api")),
    (&SPARSE, "/api", Status(404)),
    (&SPARSE, "/other", Status(404)),
    (&SPARSE, "/@fallback", Status(404)),
    // merge_slashes off.
    (&NO_MERGE, "/a/x", Loc("a")),
    (&NO_MERGE, "//a/x", Loc("root")),
    (&NO_MERGE, "/a//x", Loc("a")),
    (&NO_MERGE, "/b//../a/x", Loc("root")),
    (&NO_MERGE, "/b/../a//x", Loc("a")),
];

/// The `Locations` for `config`, with the service `svc(name)` for each location.
pub fn build<S>(config: &Config, mut svc: impl FnMut(&'static str) -> S) -> Locations<S> {
    fn to_location<S>(l: &L, svc: &mut impl FnMut(&'static str) -> S) -> Location<S> {
        let service = svc(l.name);
        let mut location = match l.kind {
            Exact => Location::exact(l.pattern, service),
            Prefix => Location::prefix(l.pattern, service),
            NoRegex => Location::prefix_no_regex(l.pattern, service),
            Regex => Location::regex(l.pattern, service),
            RegexNoCase => Location::regex_nocase(l.pattern, service),
            Named => Location::named(l.pattern, service),
        };
        for child in l.nested {
            location = location.nest(to_location(child, svc));
        }
        location
    }
    let mut builder = Locations::builder().merge_slashes(config.merge_slashes);
    for l in config.locations {
        builder = builder.location(to_location(l, &mut svc));
    }
    builder.build().expect("test configurations are valid")
}

/// The names of `config`'s locations in configuration order (depth first), which is the
/// order of `MatchedLocation::id`.
pub fn names(config: &Config) -> Vec<&'static str> {
    fn walk(ls: &[L], out: &mut Vec<&'static str>) {
        for l in ls {
            out.push(l.name);
            walk(l.nested, out);
        }
    }
    let mut out = Vec::new();
    walk(config.locations, &mut out);
    out
}

/// `config` as nginx `location` blocks, each answering `return 200 "<name>";`.
pub fn nginx_locations(config: &Config) -> String {
    fn walk(ls: &[L], depth: usize, out: &mut String) {
        for l in ls {
            let pad = "    ".repeat(depth);
            let modifier = match l.kind {
                Exact => "= ",
                Prefix | Named => "",
                NoRegex => "^~ ",
                Regex => "~ ",
                RegexNoCase => "~* ",
            };
            // Quote the pattern: regexes may hold `{`, `;` or spaces.
            let pattern = format!(
                "\"{}\"",
                l.pattern.replace('\\', "\\\\").replace('"', "\\\"")
            );
            out.push_str(&format!("{pad}location {modifier}{pattern} {{\n"));
            out.push_str(&format!("{pad}    return 200 \"{}\";\n", l.name));
            walk(l.nested, depth + 1, out);
            out.push_str(&format!("{pad}}}\n"));
        }
    }
    let mut out = String::new();
    walk(config.locations, 2, &mut out);
    out
}
