//! Rate strings: `"100/minute"`, `"50/10s"`, `"5/second"`, `"1000/hour"`, `"10 per 2 minutes"`.
//!
//! Grammar (case-insensitive, spaces around parts ignored):
//! `COUNT ("/" | "per") [AMOUNT] UNIT`, where COUNT is a whole number, AMOUNT a whole or
//! decimal number (default 1) and UNIT one of us, ms, s/sec/second, m/min/minute,
//! h/hr/hour, d/day (plurals accepted). The period must come to whole microseconds.

use super::{config, MAX_LIMIT, MAX_PERIOD_US};
use crate::error::CoreError;

const MAX_TEXT: usize = 100;
const EXAMPLES: &str = "write e.g. \"100/minute\", \"50/10s\" or \"10 per 2 minutes\"";

fn unit_us(unit: &str) -> Option<u64> {
    Some(match unit {
        "us" | "µs" | "microsecond" | "microseconds" => 1,
        "ms" | "millisecond" | "milliseconds" => 1_000,
        "s" | "sec" | "secs" | "second" | "seconds" => 1_000_000,
        "m" | "min" | "mins" | "minute" | "minutes" => 60_000_000,
        "h" | "hr" | "hrs" | "hour" | "hours" => 3_600_000_000,
        "d" | "day" | "days" => 86_400_000_000,
        _ => return None,
    })
}

/// `AMOUNT` as an exact fraction `(numerator, 10**decimals)`.
fn decimal(text: &str) -> Option<(u128, u32)> {
    let (whole, frac) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit()) || whole.len() + frac.len() > 30 {
        return None;
    }
    let digits: String = [whole, frac].concat();
    let value: u128 = digits.parse().ok()?;
    Some((value, u32::try_from(frac.len()).ok()?))
}

/// Parse a rate string into `(limit, period_us)`. Errors name the string and what is wrong.
pub fn parse_rate(text: &str) -> Result<(u64, u64), CoreError> {
    let shown: String = text.chars().take(MAX_TEXT).collect();
    let fail = |reason: &str| config(format!("invalid rate {shown:?}: {reason}; {EXAMPLES}"));
    if text.len() > MAX_TEXT {
        return Err(fail("it is too long"));
    }
    let lower = text.trim().to_lowercase();
    let (count, period) = match lower.split_once('/') {
        Some(parts) => parts,
        None => lower.split_once(" per ").ok_or_else(|| fail("expected COUNT/PERIOD or COUNT per PERIOD"))?,
    };
    let count = count.trim();
    if count.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return Err(fail("the count must be a whole number of units"));
    }
    let limit: u64 = count.parse().map_err(|_| fail("the count is too large"))?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(fail(&format!("the count must be 1 to {MAX_LIMIT}")));
    }
    let period = period.trim();
    let split = period.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(period.len());
    let (amount, unit) = period.split_at(split);
    let unit = unit.trim();
    let per = unit_us(unit).ok_or_else(|| {
        if unit.is_empty() {
            fail("the period has no unit (us, ms, s, m, h or d)")
        } else {
            fail(&format!("unknown unit {unit:?}; use us, ms, second, minute, hour or day"))
        }
    })?;
    let (numerator, decimals) = if amount.is_empty() {
        (1, 0)
    } else {
        decimal(amount).ok_or_else(|| fail("the period's amount is not a number"))?
    };
    let scale = 10u128.pow(decimals);
    let total = numerator.checked_mul(u128::from(per)).ok_or_else(|| fail("the period is too long"))?;
    if total % scale != 0 {
        return Err(fail("the period is not a whole number of microseconds"));
    }
    let period_us = total / scale;
    if period_us == 0 || period_us > u128::from(MAX_PERIOD_US) {
        return Err(fail("the period must be 1 microsecond to 366 days"));
    }
    Ok((limit, u64::try_from(period_us).map_err(|_| fail("the period is too long"))?))
}
