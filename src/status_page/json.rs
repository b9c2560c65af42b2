//! The status page's data as JSON, written by hand (the crate needs no serde for a dozen
//! fields).

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::history::{self, Rates};
use crate::stats::{PeerStats, UpstreamStats};
use crate::PeerStatus;

/// The document: `{"time_ms": .., "upstreams": [{"name": .., "peers": [..]}, ..]}`.
pub(super) fn render(stats: &[UpstreamStats], rates: &[Vec<Rates>]) -> String {
    let mut out =
        String::with_capacity(512 + 640 * stats.iter().map(|u| u.peers.len()).sum::<usize>());
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let _ = write!(out, r#"{{"time_ms":{time_ms},"upstreams":["#);
    for (i, (upstream, rates)) in stats.iter().zip(rates).enumerate() {
        if i > 0 {
            out.push(',');
        }
        upstream_json(&mut out, upstream, rates);
    }
    out.push_str("]}");
    out
}

fn upstream_json(out: &mut String, u: &UpstreamStats, rates: &[Rates]) {
    out.push_str(r#"{"name":"#);
    string(out, &u.name);
    let rate = history::total(rates).map_or_else(|| "null".to_owned(), number);
    let _ = write!(
        out,
        r#","peers_up":{},"active":{},"requests":{},"rate":{},"peers":["#,
        u.up(),
        u.active(),
        u.requests(),
        rate,
    );
    for (i, (p, r)) in u.peers.iter().zip(rates).enumerate() {
        if i > 0 {
            out.push(',');
        }
        peer_json(out, p, r);
    }
    out.push_str("]}");
}

fn peer_json(out: &mut String, p: &PeerStats, rates: &Rates) {
    out.push_str(r#"{"name":"#);
    string(out, &p.name);
    out.push_str(r#","route":"#);
    string(out, &p.route);
    let status = match p.status {
        PeerStatus::Active => "active",
        PeerStatus::Draining => "draining",
        PeerStatus::Down => "down",
    };
    let [r1, r2, r3, r4, r5] = p.responses;
    let f = &p.failures;
    let _ = write!(
        out,
        concat!(
            r#","backup":{},"status":"{}","health":"{}","available":{},"#,
            r#""unavailable_for_ms":{},"weight":{},"effective_weight":{},"fails":{},"#,
            r#""active":{},"requests":{},"#,
            r#""responses":{{"1xx":{},"2xx":{},"3xx":{},"4xx":{},"5xx":{}}},"#,
            r#""failures":{{"error":{},"timeout":{},"invalid_header":{},"status":{}}},"#,
            r#""last_failure_ms":{},"response_time_ms":{},"rate":{},"rate_history":["#
        ),
        p.backup,
        status,
        p.health(),
        p.available,
        millis(p.unavailable_for),
        p.weight,
        p.effective_weight,
        p.fails,
        p.active,
        p.requests,
        r1,
        r2,
        r3,
        r4,
        r5,
        f.error,
        f.timeout,
        f.invalid_header,
        f.status,
        millis(p.last_failure),
        p.response_time
            .map_or_else(|| "null".to_owned(), |d| number(d.as_secs_f64() * 1e3)),
        rates.now.map_or_else(|| "null".to_owned(), number),
    );
    for (i, interval) in rates.points.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            r#"{{"from_s":{},"to_s":{},"rate":{}}}"#,
            number(interval.from),
            number(interval.to),
            number(interval.rate)
        );
    }
    out.push_str("]}");
}

fn millis(d: Option<Duration>) -> String {
    d.map_or_else(|| "null".to_owned(), |d| d.as_millis().to_string())
}

/// A finite number with at most three decimals (JSON has no NaN or infinity).
fn number(x: f64) -> String {
    if !x.is_finite() {
        return "null".to_owned();
    }
    let s = format!("{x:.3}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
pub(super) fn string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Also `<`, so the document can sit inside a <script> element unharmed.
            c if c < ' ' || c == '<' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_and_numbers() {
        let mut out = String::new();
        string(&mut out, "a\"b\\c\nd\u{1}</e>");
        assert_eq!(out, r#""a\"b\\c\nd\u0001\u003c/e>""#);
        assert_eq!(number(1.5), "1.5");
        assert_eq!(number(2.0), "2");
        assert_eq!(number(0.0004), "0");
        assert_eq!(number(-0.0001), "0");
        assert_eq!(number(1.23456), "1.235");
        assert_eq!(number(f64::NAN), "null");
    }
}
