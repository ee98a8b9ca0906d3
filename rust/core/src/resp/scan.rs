//! The resumable scanner: walks a reply that has not fully arrived yet, remembering how far
//! it got and how many items each open aggregate still waits for, so each later `feed`
//! continues where the last one stopped. It only finds where the reply ends; the parser
//! then builds it in one pass.

use super::item::{depth_error, read_item, Head, Limits};
use crate::error::CoreError;

#[derive(Debug)]
pub(super) struct Scan {
    /// Start of the next item to read (a partial item is re-read from its start).
    pos: usize,
    /// Items still expected by each open aggregate, outermost first.
    open: Vec<usize>,
}

impl Scan {
    pub fn new(pos: usize) -> Self {
        Scan { pos, open: Vec::new() }
    }

    /// The buffer dropped `by` bytes from its front.
    pub fn shift(&mut self, by: usize) {
        self.pos = self.pos.saturating_sub(by);
    }

    /// Continue scanning. `Ok(Some(end))` once the whole reply is in the buffer.
    pub fn resume(&mut self, buf: &[u8], base: u64, limits: Limits) -> Result<Option<usize>, CoreError> {
        loop {
            let item_at = self.pos;
            let Some(item) = read_item(buf, self.pos, base, limits)? else { return Ok(None) };
            self.pos = item.next;
            if let Head::Open(_, children @ 1..) = item.head {
                if self.open.len() >= limits.max_depth {
                    return Err(depth_error(base + item_at as u64, limits.max_depth));
                }
                self.open.push(children);
                continue;
            }
            // One value is complete: close every aggregate it fills up.
            loop {
                let Some(left) = self.open.last_mut() else { return Ok(Some(self.pos)) };
                *left -= 1;
                if *left > 0 {
                    break;
                }
                self.open.pop();
            }
        }
    }
}
