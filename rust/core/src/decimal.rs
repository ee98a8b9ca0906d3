//! Decimal digits read straight from bytes, the crate's one digit parser: RESP integers and
//! lengths, an envelope's seq and version. No UTF-8 check or `str::parse` on hot paths.

/// The value of `digits` (ASCII digits only); `None` for an empty slice, any other byte, or
/// a value over `u64::MAX`.
pub(crate) fn parse_digits(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        let digit = d.checked_sub(b'0').filter(|v| *v <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digits_parse_as_str_parse_does() {
        for text in ["0", "7", "42", "0012", "18446744073709551615", "18446744073709551616", "", "1a", "-1", " 1"] {
            assert_eq!(
                parse_digits(text.as_bytes()),
                text.parse::<u64>().ok().filter(|_| !text.starts_with('+')),
                "{text:?}"
            );
        }
    }
}
