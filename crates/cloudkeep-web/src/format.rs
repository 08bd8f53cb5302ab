//! Numbers, money and times as pages show them. Pages format in Rust and
//! hand templates strings, so templates hold no logic and every figure is
//! written one way.

use chrono::{DateTime, Utc};

/// `1234567.891` → `1,234,567.89` (two decimals).
pub fn amount(v: f64) -> String {
    let negative = v < 0.0;
    let cents = (v.abs() * 100.0).round() as u128;
    let whole = group(&(cents / 100).to_string());
    let s = format!("{whole}.{:02}", cents % 100);
    if negative { format!("-{s}") } else { s }
}

/// An amount with its currency: `$1,234.50`, `€12.00`, or `1,234.50 SEK`.
pub fn money(v: f64, currency: &str) -> String {
    let symbol = match currency.to_ascii_uppercase().as_str() {
        "USD" => Some("$"),
        "EUR" => Some("€"),
        "GBP" => Some("£"),
        "JPY" => Some("¥"),
        _ => None,
    };
    match symbol {
        Some(sym) if v < 0.0 => format!("-{sym}{}", amount(-v)),
        Some(sym) => format!("{sym}{}", amount(v)),
        None => format!("{} {}", amount(v), currency.to_ascii_uppercase()),
    }
}

/// A whole number with thousands separators.
pub fn count(n: u64) -> String {
    group(&n.to_string())
}

/// A share as a percentage with one decimal (`0.9523` → `95.2%`).
pub fn percent(share: f64) -> String {
    format!("{:.1}%", share * 100.0)
}

fn group(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A moment, in UTC, to the minute.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn when_opt(t: Option<DateTime<Utc>>) -> String {
    t.map(when).unwrap_or_else(|| "never".into())
}

/// How long ago `t` was, from `now`, in the largest whole unit.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    if secs < 0 {
        return in_future(-secs);
    }
    match secs {
        0..=59 => "just now".into(),
        60..=3599 => plural(secs / 60, "minute", "ago"),
        3600..=86_399 => plural(secs / 3600, "hour", "ago"),
        _ => plural(secs / 86_400, "day", "ago"),
    }
}

fn in_future(secs: i64) -> String {
    match secs {
        0..=59 => "in under a minute".into(),
        60..=3599 => format!("in {}", plural(secs / 60, "minute", ""))
            .trim()
            .into(),
        3600..=86_399 => format!("in {}", plural(secs / 3600, "hour", ""))
            .trim()
            .into(),
        _ => format!("in {}", plural(secs / 86_400, "day", ""))
            .trim()
            .into(),
    }
}

fn plural(n: i64, unit: &str, suffix: &str) -> String {
    let s = if n == 1 { "" } else { "s" };
    format!("{n} {unit}{s} {suffix}").trim_end().to_string()
}

/// A duration in seconds as hours or days, as settings show cadences.
pub fn hours(secs: i64) -> String {
    if secs % 86_400 == 0 {
        plural(secs / 86_400, "day", "")
    } else {
        plural(secs / 3600, "hour", "")
    }
}

/// A closed name (`read_write_tags`) as words (`read write tags`).
pub fn words(name: &str) -> String {
    name.replace('_', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_group_thousands_and_round_to_cents() {
        assert_eq!(amount(1_234_567.891), "1,234,567.89");
        assert_eq!(amount(0.005), "0.01");
        assert_eq!(amount(-12.5), "-12.50");
        assert_eq!(money(1234.5, "usd"), "$1,234.50");
        assert_eq!(money(-3.0, "EUR"), "-€3.00");
        assert_eq!(money(99.0, "sek"), "99.00 SEK");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(999), "999");
        assert_eq!(percent(0.95234), "95.2%");
    }

    #[test]
    fn ago_says_the_largest_whole_unit() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        let at = |s: i64| now - chrono::Duration::seconds(s);
        assert_eq!(ago(at(10), now), "just now");
        assert_eq!(ago(at(60), now), "1 minute ago");
        assert_eq!(ago(at(7200), now), "2 hours ago");
        assert_eq!(ago(at(86_400 * 3), now), "3 days ago");
        assert_eq!(ago(at(-7200), now), "in 2 hours");
        assert_eq!(hours(86_400), "1 day");
        assert_eq!(hours(7200), "2 hours");
    }
}
