//! Names of channels, locks, agents, groups and namespaces.
//!
//! A name is 1 to 200 bytes of ASCII letters, digits and `_ . : / @ + = # ~ -`, and
//! does not start with `:` `/` or `.`. That keeps names readable in redis-cli,
//! safe inside Redis keys (no `{}` hash-tag braces, no glob characters `*?[]`,
//! no whitespace or control bytes), and unambiguous in the key layout.

use crate::error::CoreError;

/// Longest name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// `ALLOWED[b]`: may byte `b` appear in a name. A table, because every message id and sender
/// a subscriber receives is checked: one load per byte instead of a chain of comparisons.
static ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric()
            || matches!(c, b'_' | b'.' | b':' | b'/' | b'@' | b'+' | b'=' | b'#' | b'~' | b'-');
        b += 1;
    }
    table
};

fn allowed(b: u8) -> bool {
    ALLOWED[usize::from(b)]
}

/// Check `name`; `what` says what kind of name it is, for the error message.
pub fn validate_name(name: &str, what: &str) -> Result<(), CoreError> {
    let bytes = name.as_bytes();
    let bad = |reason: String| CoreError::InvalidName {
        what: what.to_owned(),
        name: name.chars().take(60).collect(),
        reason,
    };
    if bytes.is_empty() {
        return Err(bad("it is empty".into()));
    }
    if bytes.len() > MAX_NAME_LEN {
        return Err(bad(format!("it is {} bytes long; the limit is {MAX_NAME_LEN}", bytes.len())));
    }
    if matches!(bytes[0], b':' | b'/' | b'.') {
        return Err(bad(format!("it starts with {:?}", bytes[0] as char)));
    }
    if let Some(pos) = bytes.iter().position(|&b| !allowed(b)) {
        let ch = name[pos..].chars().next().unwrap_or('?');
        return Err(bad(format!(
            "character {ch:?} at position {pos} is not allowed (use letters, digits and _ . : / @ + = # ~ -)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_seed_channels() {
        for n in ["sprint:coordination", "agent:lifecycle", "test", "src/auth.py", "a", "x-1_2.3"] {
            assert!(validate_name(n, "channel").is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_bad_names() {
        for n in ["", ":x", "/x", ".x", "a b", "a{b}", "a*", "é", &"x".repeat(201)] {
            assert!(validate_name(n, "channel").is_err(), "{n}");
        }
    }
}
