//! nginx's configuration syntax: words, `;`, blocks, quotes, escapes and `#` comments,
//! read as `ngx_conf_read_token` reads them.

use std::fmt;

/// One directive: its name, arguments and block, and the line it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Directive {
    pub(crate) name: String,
    pub(crate) args: Vec<String>,
    pub(crate) line: usize,
    /// The directives of its `{ ... }` block, if it has one.
    pub(crate) block: Option<Vec<Directive>>,
}

/// A syntax error, with nginx's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses a whole file into its top-level directives.
pub(crate) fn parse(text: &str) -> Result<Vec<Directive>, SyntaxError> {
    let mut lexer = Lexer {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    block(&mut lexer, None)
}

/// The directives up to the `}` closing a block opened on line `opened`, or to the end.
fn block(lexer: &mut Lexer<'_>, opened: Option<usize>) -> Result<Vec<Directive>, SyntaxError> {
    let mut directives = Vec::new();
    loop {
        match lexer.next()? {
            Token::Directive {
                mut words,
                line,
                opens_block,
            } => {
                let name = words.remove(0);
                let block = if opens_block {
                    Some(block(lexer, Some(line))?)
                } else {
                    None
                };
                directives.push(Directive {
                    name,
                    args: words,
                    line,
                    block,
                });
            }
            Token::BlockEnd if opened.is_some() => return Ok(directives),
            Token::BlockEnd => return Err(lexer.error("unexpected \"}\"")),
            Token::End if opened.is_none() => return Ok(directives),
            Token::End => {
                return Err(lexer.error("unexpected end of file, expecting \"}\""));
            }
        }
    }
}

enum Token {
    /// Words ended by `;` or `{`.
    Directive {
        words: Vec<String>,
        line: usize,
        opens_block: bool,
    },
    /// `}`.
    BlockEnd,
    /// The end of the file.
    End,
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn error(&self, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line: self.line,
            message: message.into(),
        }
    }

    /// The next directive, `}` or the end: `ngx_conf_read_token`'s state machine.
    fn next(&mut self) -> Result<Token, SyntaxError> {
        let mut words: Vec<String> = Vec::new();
        let mut first_line = self.line;
        let (mut need_space, mut last_space, mut sharp_comment) = (false, true, false);
        let (mut variable, mut quoted, mut s_quoted, mut d_quoted) = (false, false, false, false);
        let mut start = self.pos;
        let finish = |words: Vec<String>, line: usize, opens_block: bool| Token::Directive {
            words,
            line,
            opens_block,
        };
        loop {
            let Some(&ch) = self.bytes.get(self.pos) else {
                if !words.is_empty() || !last_space {
                    return Err(self.error("unexpected end of file, expecting \";\" or \"}\""));
                }
                return Ok(Token::End);
            };
            self.pos += 1;
            if ch == b'\n' {
                self.line += 1;
                sharp_comment = false;
            }
            if sharp_comment {
                continue;
            }
            if quoted {
                quoted = false;
                continue;
            }
            if need_space {
                match ch {
                    b' ' | b'\t' | b'\r' | b'\n' => {
                        last_space = true;
                        need_space = false;
                        continue;
                    }
                    b';' => return Ok(finish(words, first_line, false)),
                    b'{' => return Ok(finish(words, first_line, true)),
                    b')' => {
                        last_space = true;
                        need_space = false;
                    }
                    _ => return Err(self.error(format!("unexpected \"{}\"", ch as char))),
                }
            }
            if last_space {
                start = self.pos - 1;
                match ch {
                    b' ' | b'\t' | b'\r' | b'\n' => continue,
                    b';' | b'{' if words.is_empty() => {
                        return Err(self.error(format!("unexpected \"{}\"", ch as char)));
                    }
                    b';' => return Ok(finish(words, first_line, false)),
                    b'{' => return Ok(finish(words, first_line, true)),
                    b'}' if !words.is_empty() => return Err(self.error("unexpected \"}\"")),
                    b'}' => return Ok(Token::BlockEnd),
                    b'#' => {
                        sharp_comment = true;
                        continue;
                    }
                    b'\\' => quoted = true,
                    b'"' => {
                        start += 1;
                        d_quoted = true;
                    }
                    b'\'' => {
                        start += 1;
                        s_quoted = true;
                    }
                    b'$' => variable = true,
                    _ => {}
                }
                if words.is_empty() {
                    first_line = self.line;
                }
                last_space = false;
                continue;
            }
            if ch == b'{' && variable {
                continue;
            }
            variable = false;
            if ch == b'\\' {
                quoted = true;
                continue;
            }
            if ch == b'$' {
                variable = true;
                continue;
            }
            let found = if d_quoted {
                if ch == b'"' {
                    d_quoted = false;
                    need_space = true;
                    true
                } else {
                    false
                }
            } else if s_quoted {
                if ch == b'\'' {
                    s_quoted = false;
                    need_space = true;
                    true
                } else {
                    false
                }
            } else if matches!(ch, b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{') {
                last_space = true;
                true
            } else {
                false
            };
            if found {
                words.push(unescape(&self.bytes[start..self.pos - 1]));
                match ch {
                    b';' => return Ok(finish(words, first_line, false)),
                    b'{' => return Ok(finish(words, first_line, true)),
                    _ => {}
                }
            }
        }
    }
}

/// nginx's escapes: `\"`, `\'` and `\\` are the character, `\t`, `\r` and `\n` the control
/// characters; any other backslash stays (so `\.` in a regex is `\.`).
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' {
            match raw.get(i + 1) {
                Some(&c @ (b'"' | b'\'' | b'\\')) => {
                    out.push(c);
                    i += 2;
                    continue;
                }
                Some(b't') => {
                    out.push(b'\t');
                    i += 2;
                    continue;
                }
                Some(b'r') => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                Some(b'n') => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                _ => {}
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    // The input is a `str` and only ASCII bytes were removed or replaced.
    String::from_utf8(out).expect("still UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(name: &str, args: &[&str], line: usize) -> Directive {
        Directive {
            name: name.into(),
            args: args.iter().map(|&a| a.into()).collect(),
            line,
            block: None,
        }
    }

    fn b(name: &str, args: &[&str], line: usize, block: Vec<Directive>) -> Directive {
        Directive {
            block: Some(block),
            ..d(name, args, line)
        }
    }

    fn err(text: &str) -> (usize, String) {
        let e = parse(text).unwrap_err();
        (e.line, e.message)
    }

    #[test]
    fn directives_blocks_and_lines() {
        let text = "user nginx;\nevents {\n    worker_connections 10240;\n}\n\nhttp {\n  server { listen 80; }\n}\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                d("user", &["nginx"], 1),
                b(
                    "events",
                    &[],
                    2,
                    vec![d("worker_connections", &["10240"], 3)]
                ),
                b(
                    "http",
                    &[],
                    6,
                    vec![b("server", &[], 7, vec![d("listen", &["80"], 7)])]
                ),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("  # only a comment\n").unwrap(), vec![]);
        assert_eq!(
            parse("a{}b;").unwrap(),
            vec![b("a", &[], 1, vec![]), d("b", &[], 1)]
        );
    }

    #[test]
    fn a_directive_spanning_lines_starts_on_its_first_line() {
        // The seed's log_format: three quoted pieces on three lines.
        let text = "\n\nlog_format main '$remote_addr - '\n    '$status'\n   \"$x\";\nnext;";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                d(
                    "log_format",
                    &["main", "$remote_addr - ", "$status", "$x"],
                    3
                ),
                d("next", &[], 6),
            ]
        );
        assert_eq!(parse("\n\n  a\n  b\n;").unwrap(), vec![d("a", &["b"], 3)]);
    }

    #[test]
    fn quotes_and_escapes() {
        let parsed = parse(
            r#"a "two words" 'single "q"' "with \"escaped\" quote" '\t\n' "" x\ y \.php$ 'a\\b';"#,
        )
        .unwrap();
        assert_eq!(
            parsed[0].args,
            [
                "two words",
                "single \"q\"",
                "with \"escaped\" quote",
                "\t\n",
                "",
                r"x\ y",
                r"\.php$",
                r"a\b",
            ]
        );
        // A quote inside a word is an ordinary character, and `;` inside quotes too.
        let parsed = parse("a b\"c 'x;y';").unwrap();
        assert_eq!(parsed[0].args, ["b\"c", "x;y"]);
        // `${var}` does not open a block.
        let parsed = parse("set $a ${host}x;").unwrap();
        assert_eq!(parsed[0].args, ["$a", "${host}x"]);
        // A quoted string may span lines.
        let parsed = parse("a 'x\ny';\nb;").unwrap();
        assert_eq!(parsed[0].args, ["x\ny"]);
        assert_eq!(parsed[1].line, 3);
    }

    #[test]
    fn comments() {
        let parsed = parse("# a comment; {\na b#c; # trailing } \n#\nc 'd # e' # f\n;").unwrap();
        assert_eq!(parsed, vec![d("a", &["b#c"], 2), d("c", &["d # e"], 4)]);
    }

    #[test]
    fn regexes_keep_their_characters() {
        let parsed = parse(
            "location ~ .*.(php|php5)?$ {}\nlocation ~* \\.(gif|jpg)$ {}\nlocation ~ ^/a{2}/ {}",
        );
        // `{` ends a word outside quotes, as in nginx: `^/a{2}/` must be quoted.
        assert!(parsed.is_err());
        let parsed = parse(
            "location ~ .*.(php|php5)?$ {}\nlocation ~* \\.(gif|jpg)$ {}\nlocation ~ \"^/a{2}/\" {}",
        )
        .unwrap();
        let patterns: Vec<_> = parsed.iter().map(|d| d.args[1].as_str()).collect();
        assert_eq!(patterns, [".*.(php|php5)?$", r"\.(gif|jpg)$", "^/a{2}/"]);
    }

    #[test]
    fn errors_name_the_line() {
        assert_eq!(
            err("http {\n  server {\n    listen 80;\n"),
            (4, "unexpected end of file, expecting \"}\"".into())
        );
        assert_eq!(
            err("a;\nb c"),
            (2, "unexpected end of file, expecting \";\" or \"}\"".into())
        );
        assert_eq!(err("a;\n}\n"), (2, "unexpected \"}\"".into()));
        assert_eq!(err("a;\n\n b }"), (3, "unexpected \"}\"".into()));
        assert_eq!(err("a;\n;"), (2, "unexpected \";\"".into()));
        assert_eq!(err("\n{"), (2, "unexpected \"{\"".into()));
        assert_eq!(err("a \"b\"c;"), (1, "unexpected \"c\"".into()));
        assert_eq!(
            err("a 'unterminated;\nb;\n"),
            (3, "unexpected end of file, expecting \";\" or \"}\"".into())
        );
    }
}
