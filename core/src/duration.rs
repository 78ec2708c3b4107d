//! Go-style durations (`15s`, `1m30s`, `15000ms`, `0.001s`, `1h`), as Consul's HTTP API and
//! configuration files write them.
//!
//! Durations are held as whole nanoseconds in a `u64`, the resolution Go uses; negative
//! durations are rejected because nothing in the API means a negative time.

use std::fmt::Write as _;

/// Why a duration string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?}")]
    UnknownUnit { unit: String, input: String },
    #[error("duration {0:?} out of range")]
    Overflow(String),
}

const NS_PER_US: u64 = 1_000;
const NS_PER_MS: u64 = 1_000_000;
const NS_PER_S: u64 = 1_000_000_000;
const NS_PER_M: u64 = 60 * NS_PER_S;
const NS_PER_H: u64 = 60 * NS_PER_M;

fn unit_ns(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => NS_PER_US,
        "ms" => NS_PER_MS,
        "s" => NS_PER_S,
        "m" => NS_PER_M,
        "h" => NS_PER_H,
        _ => return None,
    })
}

/// Parses a Go duration into nanoseconds. `"0"` alone needs no unit, as in Go.
pub fn parse_ns(input: &str) -> Result<u64, DurationError> {
    let s = input.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.is_empty() || s.starts_with('-') {
        return Err(DurationError::Invalid(input.to_string()));
    }
    if s == "0" {
        return Ok(0);
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let mut total: u128 = 0;
    while pos < bytes.len() {
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_part = &s[start..pos];
        let mut frac_part = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_part = &s[frac_start..pos];
        }
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(DurationError::Invalid(input.to_string()));
        }
        let unit_start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_digit() && bytes[pos] != b'.' {
            pos += 1;
        }
        let unit = &s[unit_start..pos];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(input.to_string()));
        }
        let scale = unit_ns(unit)
            .ok_or_else(|| DurationError::UnknownUnit { unit: unit.to_string(), input: input.to_string() })?
            as u128;
        let overflow = || DurationError::Overflow(input.to_string());
        let whole: u128 = if int_part.is_empty() { 0 } else { int_part.parse::<u128>().map_err(|_| overflow())? };
        let mut value = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Fractions: keep at most 18 digits, enough for nanoseconds of any unit up to hours.
        let frac_digits = &frac_part[..frac_part.len().min(18)];
        if !frac_digits.is_empty() {
            let frac: u128 = frac_digits.parse().map_err(|_| overflow())?;
            let denom = 10u128.pow(frac_digits.len() as u32);
            value += frac * scale / denom;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > u64::MAX as u128 {
            return Err(overflow());
        }
    }
    Ok(total as u64)
}

/// Parses a Go duration into whole milliseconds (rounding nanoseconds down).
pub fn parse_ms(input: &str) -> Result<u64, DurationError> {
    parse_ns(input).map(|ns| ns / NS_PER_MS)
}

/// Formats nanoseconds the way Go's `time.Duration.String` does: `0s`, `1.5s`, `1m30s`,
/// `2h0m0s`, `150ms`.
pub fn format_ns(ns: u64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    if ns < NS_PER_S {
        let (unit, scale) = if ns < NS_PER_US {
            ("ns", 1)
        } else if ns < NS_PER_MS {
            ("µs", NS_PER_US)
        } else {
            ("ms", NS_PER_MS)
        };
        return format!("{}{}", fraction(ns, scale), unit);
    }
    let mut out = String::new();
    let hours = ns / NS_PER_H;
    let minutes = (ns % NS_PER_H) / NS_PER_M;
    let rest = ns % NS_PER_M;
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    let _ = write!(out, "{}s", fraction(rest, NS_PER_S));
    out
}

/// Formats milliseconds as a Go duration string.
pub fn format_ms(ms: u64) -> String {
    format_ns(ms.saturating_mul(NS_PER_MS))
}

fn fraction(value: u64, scale: u64) -> String {
    let whole = value / scale;
    let rem = value % scale;
    if rem == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Serde helpers for durations held as nanoseconds and written as Go strings.
pub mod serde_go_ns {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ns: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_ns(*ns))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Text(String),
            Number(u64),
        }
        match Either::deserialize(d)? {
            Either::Text(t) => super::parse_ns(&t).map_err(serde::de::Error::custom),
            Either::Number(n) => Ok(n),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_consul_forms() {
        assert_eq!(parse_ms("15000ms").unwrap(), 15_000);
        assert_eq!(parse_ms("60000ms").unwrap(), 60_000);
        assert_eq!(parse_ms("15.0s").unwrap(), 15_000);
        assert_eq!(parse_ns("0.001s").unwrap(), 1_000_000);
        assert_eq!(parse_ms("1m30s").unwrap(), 90_000);
        assert_eq!(parse_ms("1h").unwrap(), 3_600_000);
        assert_eq!(parse_ns("0").unwrap(), 0);
        assert_eq!(parse_ns("1.5h").unwrap(), 90 * NS_PER_M);
        assert_eq!(parse_ns("10us").unwrap(), 10_000);
    }

    #[test]
    fn rejects_bad_forms() {
        assert!(matches!(parse_ns("10"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(parse_ns("-1s"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_ns(""), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_ns("5x"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_ns("s"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_ns("99999999999999h"), Err(DurationError::Overflow(_))));
    }

    #[test]
    fn formats_like_go() {
        assert_eq!(format_ns(0), "0s");
        assert_eq!(format_ms(15_000), "15s");
        assert_eq!(format_ms(1_500), "1.5s");
        assert_eq!(format_ms(90_000), "1m30s");
        assert_eq!(format_ms(7_200_000), "2h0m0s");
        assert_eq!(format_ms(150), "150ms");
        assert_eq!(format_ns(1_500), "1.5µs");
    }

    #[test]
    fn round_trips() {
        for ns in [1, 999, 1_000, 1_500_000, NS_PER_S, 61 * NS_PER_S, 3 * NS_PER_H + 7] {
            assert_eq!(parse_ns(&format_ns(ns)).unwrap(), ns, "{ns}");
        }
    }
}
