//! A rate table's keys: stored inline when short (no heap block of its own, so comparing
//! a cold key costs no cache miss beyond its slot), and hashed with a per-table seed, or
//! by the caller (the glue passes the hash Python keeps in every `str`: it is at hand
//! without reading the key's text, so the slot and the text are fetched side by side).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

/// Keys up to this many bytes live in the slot itself, as three words.
pub const INLINE_KEY: usize = 23;

/// A stored key. Canonical: inline exactly when it is at most [`INLINE_KEY`] bytes long,
/// so two keys are equal exactly when their representations are. Inline, the words hold
/// the bytes little-endian, zero-padded, and the length in the last byte.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyText {
    Inline([u64; 3]),
    Heap(Box<str>),
}

/// A key being looked up: its text, its inline words when short, and its hash.
pub struct Probe<'a> {
    text: &'a str,
    words: Option<[u64; 3]>,
    pub hash: u64,
}

/// Folded multiply: the high and low halves of the 128-bit product, xored. A cheap,
/// thorough mix (as in foldhash); with the per-table seed, keys chosen by users do not
/// line up in one probe sequence without knowing it.
#[inline]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

const K1: u64 = 0x243f_6a88_85a3_08d3; // digits of pi
const K2: u64 = 0x1319_8a2e_0370_7344;

/// Up to 8 bytes as a little-endian word, zero-padded. Read with whole loads (8, 4, 2, 1
/// bytes), never by copying bytes into a buffer and reading it back as a word: that
/// stalls on store forwarding for as long as the rest of a lookup takes.
#[inline(always)]
fn word(chunk: &[u8]) -> u64 {
    if let Ok(all) = <[u8; 8]>::try_from(chunk) {
        return u64::from_le_bytes(all);
    }
    let (mut w, mut shift, mut rest) = (0u64, 0u32, chunk);
    if let Some((four, tail)) = rest.split_first_chunk::<4>() {
        w = u64::from(u32::from_le_bytes(*four));
        (shift, rest) = (32, tail);
    }
    if let Some((two, tail)) = rest.split_first_chunk::<2>() {
        w |= u64::from(u16::from_le_bytes(*two)) << shift;
        (shift, rest) = (shift + 16, tail);
    }
    if let Some(&last) = rest.first() {
        w |= u64::from(last) << shift;
    }
    w
}

/// A short key's inline words (see [`KeyText`]). Always inlined, like the probes built
/// from them: built in memory and copied, the words are read back wider than they were
/// written, which stalls a lookup on store forwarding.
#[inline(always)]
fn inline_words(bytes: &[u8]) -> [u64; 3] {
    // three scalars, not a loop over an array: they stay in registers
    let n = bytes.len().min(INLINE_KEY);
    let w0 = word(&bytes[..n.min(8)]);
    let w1 = if n > 8 { word(&bytes[8..n.min(16)]) } else { 0 };
    let w2 = if n > 16 { word(&bytes[16..n]) } else { 0 };
    [w0, w1, w2 | (n as u64) << 56]
}

#[inline]
fn hash_words(seed: u64, words: &[u64; 3]) -> u64 {
    let h = fold(seed ^ words[0], K1);
    let h = fold(h ^ words[1], K1);
    fold(fold(h ^ words[2], K1), K2)
}

fn hash_long(seed: u64, text: &[u8]) -> u64 {
    let mut h = seed ^ (text.len() as u64).wrapping_mul(K2);
    for chunk in text.chunks(8) {
        h = fold(h ^ word(chunk), K1);
    }
    fold(h, K2)
}

/// A seed for one table's hashes, from the standard library's random keys.
pub fn new_seed() -> u64 {
    RandomState::new().hash_one(0x6c6f_636b_7374_6570_u64)
}

impl<'a> Probe<'a> {
    /// The key hashed with a table's seed.
    #[inline]
    pub fn new(text: &'a str, seed: u64) -> Self {
        let bytes = text.as_bytes();
        if bytes.len() <= INLINE_KEY {
            let words = inline_words(bytes);
            Probe { text, words: Some(words), hash: hash_words(seed, &words) }
        } else {
            Probe { text, words: None, hash: hash_long(seed, bytes) }
        }
    }

    /// The key with a hash the caller computed.
    #[inline(always)]
    pub fn hashed(text: &'a str, hash: u64) -> Self {
        let bytes = text.as_bytes();
        Probe { text, words: (bytes.len() <= INLINE_KEY).then(|| inline_words(bytes)), hash }
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    /// Whether `stored` is this key: three word compares for a short key.
    #[inline]
    pub fn matches(&self, stored: &KeyText) -> bool {
        match (stored, &self.words) {
            (KeyText::Inline(words), Some(mine)) => words == mine,
            (KeyText::Heap(text), None) => **text == *self.text,
            _ => false,
        }
    }

    /// The key to store.
    pub fn to_key(&self) -> KeyText {
        match self.words {
            Some(words) => KeyText::Inline(words),
            None => KeyText::Heap(self.text.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_keys_hash_and_match_as_their_probes() {
        let seed = new_seed();
        let texts: Vec<String> = [
            "",
            "a",
            "k1",
            "abcdefg",
            "abcdefgh",
            "abcdefghi",
            "exactly-22-bytes-long!",
            "twenty-three-bytes-long",
            "twenty-four-bytes-long!!",
            "x".repeat(200).as_str(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for text in &texts {
            let probe = Probe::new(text, seed);
            let key = probe.to_key();
            assert!(probe.matches(&key) && Probe::hashed(text, 7).matches(&key));
            assert_eq!(matches!(key, KeyText::Inline { .. }), text.len() <= INLINE_KEY);
            for other in texts.iter().filter(|o| *o != text) {
                assert!(!Probe::new(other, seed).matches(&key), "{other:?} vs {text:?}");
            }
            for cut in 0..=text.len().min(INLINE_KEY) {
                let prefix = &text.as_bytes()[..cut];
                let words = inline_words(prefix);
                let byte = |i: usize| (words[i / 8] >> (8 * (i % 8))) as u8;
                let want: Vec<u8> = (0..INLINE_KEY).map(|i| prefix.get(i).copied().unwrap_or(0)).collect();
                assert_eq!((0..INLINE_KEY).map(byte).collect::<Vec<u8>>(), want, "{prefix:?}");
                assert_eq!(words[2] >> 56, cut as u64);
            }
        }
        // a NUL byte is text too: "a" and "a\0" differ though their padded bytes are alike
        assert!(!Probe::new("a\0", seed).matches(&Probe::new("a", seed).to_key()));
    }
}
