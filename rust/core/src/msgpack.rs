//! The few msgpack pieces the envelope needs: a reader that can skip one whole value
//! (to find where embedded `data` ends), typed readers for the envelope's own fields,
//! and compact writers. Errors are plain reasons with the byte offset; the envelope
//! module wraps them into `CoreError::Envelope`.

/// Deepest nesting of arrays and maps accepted inside embedded data.
pub const MAX_DEPTH: usize = 128;

pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub fn pos(&self) -> usize {
        self.pos
    }

    fn truncated(&self) -> String {
        format!("msgpack truncated at byte {} of {}", self.pos, self.buf.len())
    }

    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated())?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated())?;
        let bytes = self.buf.get(self.pos..end).ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn be16(&mut self) -> Result<usize, String> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }

    fn be32(&mut self) -> Result<usize, String> {
        let n = u32::from_be_bytes(self.array()?);
        usize::try_from(n).map_err(|_| format!("length {n} does not fit in memory"))
    }

    /// Skip exactly one value (with everything nested in it). Iterative, so a hostile
    /// nesting depth costs a bounded stack of counters, never the call stack.
    pub fn skip_value(&mut self, max_depth: usize) -> Result<(), String> {
        let mut open: Vec<u64> = Vec::new();
        let mut remaining: u64 = 1;
        loop {
            while remaining == 0 {
                match open.pop() {
                    Some(r) => remaining = r,
                    None => return Ok(()),
                }
            }
            remaining -= 1;
            let at = self.pos;
            let tag = self.byte()?;
            let children: u64 = match tag {
                0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => 0,
                0x80..=0x8f => 2 * u64::from(tag & 0x0f),
                0x90..=0x9f => u64::from(tag & 0x0f),
                0xa0..=0xbf => self.take(usize::from(tag & 0x1f)).map(|_| 0)?,
                0xc4 | 0xd9 => {
                    let n = usize::from(self.byte()?);
                    self.take(n).map(|_| 0)?
                }
                0xc5 | 0xda => {
                    let n = self.be16()?;
                    self.take(n).map(|_| 0)?
                }
                0xc6 | 0xdb => {
                    let n = self.be32()?;
                    self.take(n).map(|_| 0)?
                }
                // ext 8/16/32: length, then a type byte, then the bytes
                0xc7 => {
                    let n = usize::from(self.byte()?);
                    self.take(n.saturating_add(1)).map(|_| 0)?
                }
                0xc8 => {
                    let n = self.be16()?;
                    self.take(n.saturating_add(1)).map(|_| 0)?
                }
                0xc9 => {
                    let n = self.be32()?;
                    self.take(n.saturating_add(1)).map(|_| 0)?
                }
                0xcc | 0xd0 => self.take(1).map(|_| 0)?,
                0xcd | 0xd1 => self.take(2).map(|_| 0)?,
                0xca | 0xce | 0xd2 => self.take(4).map(|_| 0)?,
                0xcb | 0xcf | 0xd3 => self.take(8).map(|_| 0)?,
                // fixext 1/2/4/8/16: a type byte, then the bytes
                0xd4 => self.take(2).map(|_| 0)?,
                0xd5 => self.take(3).map(|_| 0)?,
                0xd6 => self.take(5).map(|_| 0)?,
                0xd7 => self.take(9).map(|_| 0)?,
                0xd8 => self.take(17).map(|_| 0)?,
                0xdc => self.be16()? as u64,
                0xdd => self.be32()? as u64,
                0xde => 2 * self.be16()? as u64,
                0xdf => 2 * self.be32()? as u64,
                0xc1 => return Err(format!("byte 0xc1 at offset {at} is not a msgpack type")),
            };
            if children > 0 {
                if open.len() >= max_depth {
                    return Err(format!("msgpack nested deeper than {max_depth} levels at byte {at}"));
                }
                open.push(remaining);
                remaining = children;
            }
        }
    }

    /// A str value (fixstr, str8/16/32), as raw bytes.
    pub fn read_str(&mut self, what: &str) -> Result<&'a [u8], String> {
        let at = self.pos;
        let tag = self.byte()?;
        let n = match tag {
            0xa0..=0xbf => usize::from(tag & 0x1f),
            0xd9 => usize::from(self.byte()?),
            0xda => self.be16()?,
            0xdb => self.be32()?,
            _ => return Err(format!("{what} at byte {at} is not a msgpack string (tag 0x{tag:02x})")),
        };
        self.take(n)
    }

    /// An integer in any msgpack integer encoding, widened so u64 and i64 both fit.
    fn read_integer(&mut self, what: &str) -> Result<i128, String> {
        let at = self.pos;
        let tag = self.byte()?;
        Ok(match tag {
            0x00..=0x7f => i128::from(tag),
            0xe0..=0xff => i128::from(tag as i8),
            0xcc => i128::from(self.byte()?),
            0xcd => i128::from(u16::from_be_bytes(self.array()?)),
            0xce => i128::from(u32::from_be_bytes(self.array()?)),
            0xcf => i128::from(u64::from_be_bytes(self.array()?)),
            0xd0 => i128::from(i8::from_be_bytes(self.array()?)),
            0xd1 => i128::from(i16::from_be_bytes(self.array()?)),
            0xd2 => i128::from(i32::from_be_bytes(self.array()?)),
            0xd3 => i128::from(i64::from_be_bytes(self.array()?)),
            _ => return Err(format!("{what} at byte {at} is not a msgpack integer (tag 0x{tag:02x})")),
        })
    }

    /// A non-negative integer in any msgpack integer encoding.
    pub fn read_uint(&mut self, what: &str) -> Result<u64, String> {
        let v = self.read_integer(what)?;
        u64::try_from(v).map_err(|_| format!("{what} is negative ({v})"))
    }

    /// A number (float or integer) as f64.
    pub fn read_f64(&mut self, what: &str) -> Result<f64, String> {
        match self.buf.get(self.pos) {
            Some(0xca) => {
                self.pos += 1;
                Ok(f64::from(f32::from_be_bytes(self.array()?)))
            }
            Some(0xcb) => {
                self.pos += 1;
                Ok(f64::from_be_bytes(self.array()?))
            }
            _ => {
                let at = self.pos;
                self.read_integer(what).map(|v| v as f64).map_err(|e| match self.buf.get(at) {
                    Some(_) => format!("{what} at byte {at} is not a msgpack number"),
                    None => e,
                })
            }
        }
    }
}

/// Length of the str header `write_str` emits for `len` bytes.
pub fn str_header_len(len: usize) -> usize {
    match len {
        0..=31 => 1,
        32..=0xff => 2,
        0x100..=0xffff => 3,
        _ => 5,
    }
}

pub fn write_str(out: &mut Vec<u8>, s: &[u8]) {
    let len = s.len();
    match len {
        0..=31 => out.push(0xa0 | len as u8),
        32..=0xff => out.extend_from_slice(&[0xd9, len as u8]),
        0x100..=0xffff => {
            out.push(0xda);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(s);
}

/// The header of an array of `count` values (the values follow it, back to back).
pub fn write_array_header(out: &mut Vec<u8>, count: usize) {
    match count {
        0..=15 => out.push(0x90 | count as u8),
        16..=0xffff => {
            out.push(0xdc);
            out.extend_from_slice(&(count as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdd);
            out.extend_from_slice(&u32::try_from(count).unwrap_or(u32::MAX).to_be_bytes());
        }
    }
}

/// Length of the most compact encoding of `v`.
pub fn uint_len(v: u64) -> usize {
    match v {
        0..=0x7f => 1,
        0x80..=0xff => 2,
        0x100..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

pub fn write_uint(out: &mut Vec<u8>, v: u64) {
    match v {
        0..=0x7f => out.push(v as u8),
        0x80..=0xff => out.extend_from_slice(&[0xcc, v as u8]),
        0x100..=0xffff => {
            out.push(0xcd);
            out.extend_from_slice(&(v as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xce);
            out.extend_from_slice(&(v as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
}

pub fn write_f64(out: &mut Vec<u8>, v: f64) {
    out.push(0xcb);
    out.extend_from_slice(&v.to_be_bytes());
}
