//! Helpers shared by the integration tests: a tiny deterministic PRNG (no extra crates).
#![allow(dead_code)]

pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn bytes(&mut self, max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len).map(|_| self.next_u64() as u8).collect()
    }

    /// Bytes drawn mostly from `alphabet`, so random input reaches deep parser states.
    pub fn bytes_from(&mut self, alphabet: &[u8], max_len: usize) -> Vec<u8> {
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| if self.below(10) == 0 { self.next_u64() as u8 } else { alphabet[self.below(alphabet.len())] })
            .collect()
    }
}
