//! The status page as HTML: one table per upstream, no script, every name escaped.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::history::{self, Rates, WINDOW};
use crate::stats::{PeerHealth, PeerStats, UpstreamStats};

/// What the page shows besides the statistics.
pub(super) struct View<'a> {
    pub(super) title: &'a str,
    pub(super) refresh: Duration,
    pub(super) now: SystemTime,
}

const STYLE: &str = r#"
:root{color-scheme:light dark;
--bg:#f4f6f8;--card:#fff;--fg:#1f2328;--dim:#656d76;--line:#e1e5ea;--th:#f8f9fb;--link:#0969da;
--up:#1a7f37;--up-bg:#dafbe1;--draining:#9a6700;--draining-bg:#fff4c2;--down:#57606a;--down-bg:#eaeef2;
--unavailable:#cf222e;--unavailable-bg:#ffebe9;--full:#bc4c00;--full-bg:#fff1e5;
--r1:#8c959f;--r2:#2da44e;--r3:#218bff;--r4:#d4a72c;--r5:#e5534b;--spark:#0969da}
@media (prefers-color-scheme:dark){:root{
--bg:#0d1117;--card:#161b22;--fg:#e6edf3;--dim:#8d96a0;--line:#30363d;--th:#1c2128;--link:#4493f8;
--up:#3fb950;--up-bg:#12261e;--draining:#d29922;--draining-bg:#272115;--down:#8d96a0;--down-bg:#21262d;
--unavailable:#f85149;--unavailable-bg:#2d1315;--full:#db6d28;--full-bg:#2b1a10;--spark:#4493f8}}
*{box-sizing:border-box}
body{margin:0;padding:24px 28px;background:var(--bg);color:var(--fg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
header{display:flex;align-items:baseline;flex-wrap:wrap;gap:6px 18px;margin:0 0 20px}
h1{font-size:22px;margin:0;font-weight:650}
.meta{color:var(--dim)}
a{color:var(--link);text-decoration:none}
a:hover{text-decoration:underline}
section{background:var(--card);border:1px solid var(--line);border-radius:12px;margin:0 0 22px;
overflow:hidden;box-shadow:0 1px 3px rgba(31,35,40,.07)}
.scroll{overflow-x:auto}
.head{display:flex;align-items:baseline;justify-content:space-between;flex-wrap:wrap;gap:6px 24px;
padding:14px 18px}
h2{font-size:17px;margin:0;font-weight:650}
.totals{display:flex;gap:22px;color:var(--dim)}
.totals b{color:var(--fg);font-weight:600;font-variant-numeric:tabular-nums}
table{width:100%;border-collapse:collapse}
th{font-size:11px;text-transform:uppercase;letter-spacing:.05em;color:var(--dim);font-weight:600;
text-align:left;padding:8px 12px;background:var(--th);border-top:1px solid var(--line);
border-bottom:1px solid var(--line);white-space:nowrap}
td{padding:10px 12px;border-bottom:1px solid var(--line);vertical-align:middle}
tbody tr:last-child td{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.peer td:first-child{border-left:4px solid var(--c);white-space:nowrap}
.up{--c:var(--up);--cb:var(--up-bg)}
.draining{--c:var(--draining);--cb:var(--draining-bg)}
.down{--c:var(--down);--cb:var(--down-bg)}
.unavailable{--c:var(--unavailable);--cb:var(--unavailable-bg)}
.full{--c:var(--full);--cb:var(--full-bg)}
.state{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;
color:var(--c);background:var(--cb);white-space:nowrap}
.state::before{content:"";display:inline-block;width:7px;height:7px;border-radius:50%;
background:var(--c);margin-right:6px;vertical-align:1px}
.name{font-weight:600;font-family:ui-monospace,SFMono-Regular,"SF Mono",Menlo,Consolas,monospace;
font-size:13px;white-space:nowrap}
.sub{display:block;color:var(--dim);font-size:12px;font-weight:400;margin-top:2px}
.tag{display:inline-block;margin-left:6px;padding:0 6px;border:1px solid var(--line);
border-radius:6px;font:500 11px/1.6 system-ui,sans-serif;color:var(--dim);vertical-align:1px}
.dim{color:var(--dim)}
.rate{display:flex;align-items:center;gap:8px;white-space:nowrap}
.rate svg{flex:none;color:var(--spark)}
.rate span{min-width:48px;text-align:right;font-variant-numeric:tabular-nums}
.bar{display:block;border-radius:3px}
.legend{display:flex;flex-wrap:wrap;gap:2px 10px;margin-top:5px;font-size:12px;color:var(--dim);
font-variant-numeric:tabular-nums}
.legend i{display:inline-block;width:8px;height:8px;border-radius:2px;margin-right:4px}
.c1{background:var(--r1);fill:var(--r1)}.c2{background:var(--r2);fill:var(--r2)}
.c3{background:var(--r3);fill:var(--r3)}.c4{background:var(--r4);fill:var(--r4)}
.c5{background:var(--r5);fill:var(--r5)}
.empty{fill:var(--line)}
.fail{color:var(--unavailable);font-weight:600}
.sub{white-space:nowrap}
footer{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:center;color:var(--dim);font-size:12px}
"#;

pub(super) fn render(view: &View<'_>, stats: &[UpstreamStats], rates: &[Vec<Rates>]) -> String {
    let peers: usize = stats.iter().map(|u| u.peers.len()).sum();
    let mut out = String::with_capacity(STYLE.len() + 2048 + 2048 * peers);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let refresh = view
        .refresh
        .as_secs()
        .max(u64::from(!view.refresh.is_zero()));
    if refresh > 0 {
        let _ = writeln!(out, r#"<meta http-equiv="refresh" content="{refresh}">"#);
    }
    out.push_str("<title>");
    escape(&mut out, view.title);
    out.push_str("</title>\n<style>");
    out.push_str(STYLE);
    out.push_str("</style>\n</head>\n<body>\n<header><h1>");
    escape(&mut out, view.title);
    let _ = write!(
        out,
        "</h1><span class=\"meta\">{} · {} · updated {} UTC",
        plural(stats.len(), "upstream"),
        plural(peers, "peer"),
        clock(view.now),
    );
    if refresh > 0 {
        let _ = write!(out, " · refreshes every {refresh} s");
    }
    out.push_str(" · <a href=\"?format=json\">JSON</a></span></header>\n");
    for (upstream, rates) in stats.iter().zip(rates) {
        section(&mut out, upstream, rates);
    }
    out.push_str("<footer>");
    for h in [
        PeerHealth::Up,
        PeerHealth::Draining,
        PeerHealth::Down,
        PeerHealth::Unavailable,
        PeerHealth::Full,
    ] {
        let _ = write!(out, r#"<span class="state {h}">{h}</span>"#);
    }
    let _ = write!(
        out,
        "<span>Rate: requests per second, over up to the last {} s.</span></footer>\n</body>\n</html>\n",
        WINDOW.as_secs()
    );
    out
}

fn section(out: &mut String, u: &UpstreamStats, rates: &[Rates]) {
    out.push_str("<section class=\"upstream\" data-upstream=\"");
    escape(out, &u.name);
    out.push_str("\">\n<div class=\"head\"><h2>");
    escape(out, &u.name);
    let rate = history::total(rates);
    let _ = writeln!(
        out,
        "</h2><div class=\"totals\"><span><b>{}</b> of {} up</span><span><b>{}</b> active</span>\
         <span><b>{}</b> requests</span><span><b>{}</b></span></div></div>",
        u.up(),
        plural(u.peers.len(), "peer"),
        count(u.active()),
        count(u.requests()),
        per_second(rate),
    );
    out.push_str(
        "<div class=\"scroll\"><table>\n<thead><tr><th>Peer</th><th>State</th><th class=\"num\">Weight</th>\
         <th class=\"num\">Active</th><th class=\"num\">Requests</th><th>Rate</th>\
         <th>Responses</th><th>Failures</th><th class=\"num\" title=\"moving average of the time to the response head\">Resp. time</th></tr></thead>\n<tbody>\n",
    );
    for (p, r) in u.peers.iter().zip(rates) {
        row(out, p, r);
    }
    out.push_str("</tbody>\n</table></div>\n</section>\n");
}

fn row(out: &mut String, p: &PeerStats, rates: &Rates) {
    let health = p.health();
    let _ = write!(out, r#"<tr class="peer {health}" data-peer=""#);
    escape(out, &p.name);
    let _ = write!(out, r#"" data-health="{health}">"#);

    // Peer: name, backup tag, route.
    out.push_str("<td><span class=\"name\">");
    escape(out, &p.name);
    out.push_str("</span>");
    if p.backup {
        out.push_str("<span class=\"tag\">backup</span>");
    }
    if p.route != p.name {
        out.push_str("<span class=\"sub\">route ");
        escape(out, &p.route);
        out.push_str("</span>");
    }
    out.push_str("</td>");

    // State, and why.
    let _ = write!(out, r#"<td><span class="state {health}">{health}</span>"#);
    match (health, p.unavailable_for) {
        (PeerHealth::Unavailable, Some(left)) => {
            let _ = write!(out, "<span class=\"sub\">for {}</span>", duration(left));
        }
        (PeerHealth::Full, _) => out.push_str("<span class=\"sub\">at max_conns</span>"),
        _ => {}
    }
    if p.fails > 0 {
        let _ = write!(out, "<span class=\"sub\">fails {}</span>", p.fails);
    }
    out.push_str("</td>");

    // Weight (effective weight when lower), active, requests.
    let _ = write!(out, "<td class=\"num\">{}", p.weight);
    if p.effective_weight != i64::from(p.weight) {
        let _ = write!(
            out,
            "<span class=\"sub\">effective {}</span>",
            p.effective_weight
        );
    }
    let _ = write!(
        out,
        "</td><td class=\"num\">{}</td><td class=\"num\">{}</td>",
        count(u64::from(p.active)),
        count(p.requests)
    );

    // Rate sparkline.
    out.push_str("<td><div class=\"rate\">");
    sparkline(out, rates);
    let _ = write!(out, "<span>{}</span></div></td>", per_second(rates.now));

    // Responses by class.
    out.push_str("<td>");
    responses(out, &p.responses);
    out.push_str("</td>");

    // Failures by kind, and the last one.
    let f = &p.failures;
    if f.total() == 0 {
        out.push_str("<td class=\"dim\">none</td>");
    } else {
        let kinds = [
            ("error", f.error),
            ("timeout", f.timeout),
            ("invalid header", f.invalid_header),
            ("status", f.status),
        ];
        let listed: Vec<_> = kinds
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(kind, n)| format!("{kind} {}", count(*n)))
            .collect();
        let _ = write!(out, "<td><span class=\"fail\">{}</span>", listed.join(", "));
        if let Some(ago) = p.last_failure {
            let _ = write!(out, "<span class=\"sub\">last {} ago</span>", duration(ago));
        }
        out.push_str("</td>");
    }

    // Response time (moving average).
    match p.response_time {
        Some(t) => {
            let _ = write!(out, "<td class=\"num\">{}</td>", response_time(t));
        }
        None => out.push_str("<td class=\"num dim\">–</td>"),
    }
    out.push_str("</tr>\n");
}

const SPARK_W: f64 = 100.0;
const SPARK_H: f64 = 28.0;

/// An inline SVG sparkline of the request rate over the last [`WINDOW`].
fn sparkline(out: &mut String, rates: &Rates) {
    let max = rates.points.iter().map(|i| i.rate).fold(0.0, f64::max);
    let _ = write!(
        out,
        r#"<svg width="{SPARK_W}" height="{SPARK_H}" viewBox="0 0 {SPARK_W} {SPARK_H}" role="img" aria-label="request rate, peak {}">"#,
        per_second(Some(max)),
    );
    let base = SPARK_H - 1.5;
    let _ = write!(
        out,
        r#"<line x1="0" y1="{base}" x2="{SPARK_W}" y2="{base}" stroke="currentColor" stroke-opacity=".25" stroke-width="1"/>"#
    );
    if let Some(oldest) = rates.points.first() {
        // A young history fills the width; from a minute on, the axis is the last minute.
        let window = oldest.from.clamp(5.0, WINDOW.as_secs_f64());
        let x = |ago: f64| SPARK_W * (1.0 - (ago / window).min(1.0));
        let y = |rate: f64| {
            if max > 0.0 {
                base - (rate / max) * (SPARK_H - 4.0)
            } else {
                base
            }
        };
        // A line through each interval's middle, held flat to the ends of the first and
        // the last interval.
        let last = rates.points[rates.points.len() - 1];
        let mut line = format!("{:.1},{:.1} ", x(oldest.from), y(oldest.rate));
        for i in &rates.points {
            let _ = write!(line, "{:.1},{:.1} ", x((i.from + i.to) / 2.0), y(i.rate));
        }
        let _ = write!(line, "{:.1},{:.1}", x(last.to), y(last.rate));
        let (first, last) = (x(oldest.from), x(last.to));
        let _ = write!(
            out,
            r#"<polygon points="{first:.1},{base} {line} {last:.1},{base}" fill="currentColor" fill-opacity=".14"/>"#,
        );
        let _ = write!(
            out,
            r#"<polyline points="{line}" fill="none" stroke="currentColor" stroke-width="1.6" stroke-linejoin="round" stroke-linecap="round"/>"#,
        );
    }
    out.push_str("</svg>");
}

/// A stacked bar of the responses by status class, with a legend.
fn responses(out: &mut String, classes: &[u64; 5]) {
    const W: f64 = 120.0;
    let total: u64 = classes.iter().sum();
    let _ = write!(
        out,
        r#"<svg class="bar" width="{W}" height="8" viewBox="0 0 {W} 8" role="img" aria-label="responses by status class">"#
    );
    if total == 0 {
        let _ = write!(
            out,
            r#"<rect class="empty" width="{W}" height="8" rx="3"/></svg><div class="legend">no responses yet</div>"#
        );
        return;
    }
    let mut x = 0.0;
    for (i, &n) in classes.iter().enumerate() {
        if n == 0 {
            continue;
        }
        let w = W * n as f64 / total as f64;
        let _ = write!(
            out,
            r#"<rect class="c{}" x="{x:.2}" width="{w:.2}" height="8"/>"#,
            i + 1
        );
        x += w;
    }
    out.push_str("</svg><div class=\"legend\">");
    for (i, &n) in classes.iter().enumerate() {
        if n > 0 {
            let _ = write!(
                out,
                r#"<span><i class="c{0}"></i>{0}xx {1}</span>"#,
                i + 1,
                count(n)
            );
        }
    }
    out.push_str("</div>");
}

/// Escapes text for HTML content and attribute values.
pub(super) fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// `1234567` as `1,234,567`.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn per_second(rate: Option<f64>) -> String {
    match rate {
        None => "– /s".to_owned(),
        Some(r) if r >= 100.0 => format!("{} /s", count(r.round() as u64)),
        Some(r) => format!("{r:.1} /s"),
    }
}

/// A coarse human duration: `850 ms`, `6.0 s`, `4 min 12 s`, `3 h 5 min`, `2 d 4 h`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    let s = d.as_secs();
    match s {
        _ if ms < 1_000 => format!("{ms} ms"),
        0..60 => format!("{:.1} s", d.as_secs_f64()),
        60..3_600 => format!("{} min {} s", s / 60, s % 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

fn response_time(d: Duration) -> String {
    let us = d.as_micros();
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// `HH:MM:SS` of `t`, in UTC.
fn clock(t: SystemTime) -> String {
    let s = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3_600, s % 3_600 / 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        let mut out = String::new();
        escape(&mut out, r#"<a href="x">'&'</a>"#);
        assert_eq!(out, "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(
            [count(0), count(999), count(1_000), count(1_234_567)],
            ["0", "999", "1,000", "1,234,567"]
        );
        assert_eq!(
            [
                duration(Duration::from_millis(850)),
                duration(Duration::from_millis(6_001)),
                duration(Duration::from_secs(252)),
                duration(Duration::from_secs(3 * 3600 + 300)),
                duration(Duration::from_secs(2 * 86_400 + 4 * 3600)),
            ],
            ["850 ms", "6.0 s", "4 min 12 s", "3 h 5 min", "2 d 4 h"]
        );
        assert_eq!(
            [
                response_time(Duration::from_micros(850)),
                response_time(Duration::from_micros(1_250)),
                response_time(Duration::from_millis(2_500)),
            ],
            ["850 µs", "1.2 ms", "2.50 s"]
        );
        assert_eq!(
            [
                per_second(None),
                per_second(Some(0.5)),
                per_second(Some(1234.4))
            ],
            ["– /s", "0.5 /s", "1,234 /s"]
        );
        assert_eq!(
            clock(UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 3_723)),
            "01:02:03"
        );
    }
}
