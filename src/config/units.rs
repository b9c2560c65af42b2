//! nginx's time (`10s`, `1m 30s`, `500ms`) and size (`8m`, `32k`) syntax.

use std::time::Duration;

/// Parses nginx's time syntax as `ngx_parse_time` does: numbers with units `y` (365 days)
/// and `M` (30 days) only when `seconds` is set, `w`, `d`, `h`, `m`, `s`, and `ms` only when
/// `seconds` is not set, largest unit first, each at most once, optionally separated by
/// spaces; a number without unit is seconds. Directives that take whole seconds (such as
/// `fail_timeout`) use `seconds = true`.
pub(crate) fn parse_time(text: &str, seconds: bool) -> Option<Duration> {
    #[derive(PartialEq, PartialOrd, Clone, Copy)]
    enum Step {
        Start,
        Year,
        Month,
        Week,
        Day,
        Hour,
        Min,
        Sec,
        Msec,
        Last,
    }
    const DAY: u64 = 24 * 60 * 60 * 1000;
    let mut step = if seconds { Step::Start } else { Step::Month };
    let (mut value, mut total, mut valid) = (0u64, 0u64, false);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b.is_ascii_digit() {
            value = value.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            valid = true;
            continue;
        }
        let (next, scale_ms) = match b {
            b'y' if step == Step::Start => (Step::Year, 365 * DAY),
            b'M' if step < Step::Month => (Step::Month, 30 * DAY),
            b'w' if step < Step::Week => (Step::Week, 7 * DAY),
            b'd' if step < Step::Day => (Step::Day, DAY),
            b'h' if step < Step::Hour => (Step::Hour, 60 * 60 * 1000),
            b'm' if bytes.get(i) == Some(&b's') => {
                if seconds || step >= Step::Msec {
                    return None;
                }
                i += 1;
                (Step::Msec, 1)
            }
            b'm' if step < Step::Min => (Step::Min, 60 * 1000),
            b's' if step < Step::Sec => (Step::Sec, 1000),
            b' ' if step < Step::Sec => (Step::Last, 1000),
            _ => return None,
        };
        step = next;
        total = total.checked_add(value.checked_mul(scale_ms)?)?;
        value = 0;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !valid {
        return None;
    }
    total = total.checked_add(value.checked_mul(1000)?)?;
    Some(Duration::from_millis(total))
}

/// Writes a duration in nginx's syntax: `10s`, or `1500ms` when it is not whole seconds.
#[cfg(any(feature = "serde", test))]
pub(crate) fn format_time(duration: Duration) -> String {
    let ms = duration.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Parses nginx's size syntax as `ngx_parse_offset` does: a number of bytes, with an
/// optional `k`, `m` or `g` suffix (either case) for KiB, MiB and GiB.
pub(crate) fn parse_size(text: &str) -> Option<u64> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// Serde for durations: nginx's syntax (`"10s"`, `"1m 30s"`, `"500ms"`) or a number of
/// seconds; written as nginx's syntax.
#[cfg(feature = "serde")]
pub(crate) mod serde_time {
    use std::time::Duration;

    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_time(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        struct Time;
        impl Visitor<'_> for Time {
            type Value = Duration;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a time such as \"10s\", \"1m 30s\" or \"500ms\", or seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom(format!("negative time {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                super::parse_time(v, false).ok_or_else(|| E::custom(format!("invalid time `{v}`")))
            }
        }
        d.deserialize_any(Time)
    }
}

/// Serde for optional byte sizes: a number of bytes or nginx's syntax (`"8m"`, `"32k"`);
/// written as a number.
#[cfg(feature = "serde")]
pub(crate) mod serde_size {
    use serde::de::{self, Deserializer, Visitor};
    use serde::Serializer;

    pub(crate) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.serialize_some(v),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        struct Size;
        impl<'de> Visitor<'de> for Size {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a size in bytes, or such as \"8m\" or \"32k\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(Some)
                    .map_err(|_| E::custom(format!("negative size {v}")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                super::parse_size(v)
                    .map(Some)
                    .ok_or_else(|| E::custom(format!("invalid size `{v}`")))
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
        }
        d.deserialize_option(Size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_nginx_parses_them() {
        let ms = |t: &str, sec: bool| parse_time(t, sec).map(|d| d.as_millis());
        assert_eq!(ms("10s", true), Some(10_000));
        assert_eq!(ms("30", true), Some(30_000));
        assert_eq!(ms("1m 30s", true), Some(90_000));
        assert_eq!(ms("1h30m", false), Some(5_400_000));
        assert_eq!(ms("2d", false), Some(172_800_000));
        assert_eq!(ms("1y", true), Some(365 * 86_400_000));
        assert_eq!(ms("500ms", false), Some(500));
        assert_eq!(ms("1s 500ms", false), Some(1500));
        // `ms` only where milliseconds are allowed, `y` only in seconds, units in order.
        assert_eq!(ms("500ms", true), None);
        assert_eq!(ms("1y", false), None);
        assert_eq!(ms("1M", false), None);
        assert_eq!(ms("1M", true), Some(30 * 86_400_000));
        assert_eq!(ms("30s 1m", false), None);
        assert_eq!(ms("1s1s", false), None);
        assert_eq!(ms("", false), None);
        assert_eq!(ms("s", false), None);
        assert_eq!(ms("10x", false), None);
        assert_eq!(ms("-1", false), None);
        assert_eq!(ms("99999999999999999999", false), None);
    }

    #[test]
    fn times_are_written_back() {
        assert_eq!(format_time(Duration::from_secs(10)), "10s");
        assert_eq!(format_time(Duration::from_millis(1500)), "1500ms");
        for t in ["10s", "1500ms", "0s"] {
            assert_eq!(format_time(parse_time(t, false).unwrap()), t);
        }
    }

    #[test]
    fn sizes_as_nginx_parses_them() {
        assert_eq!(parse_size("8m"), Some(8 << 20));
        assert_eq!(parse_size("32K"), Some(32 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("0"), Some(0));
        assert_eq!(parse_size("1024"), Some(1024));
        for bad in ["", "m", "8 m", "8mb", "-1", "1.5m", "+1"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }
}
