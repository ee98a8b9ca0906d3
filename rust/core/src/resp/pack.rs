//! Commands as RESP arrays of bulk strings, many into one buffer so a pipeline is one write.

use crate::error::CoreError;

/// One command argument. Integers are sent as their decimal text, as Redis expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg<'a> {
    Bytes(&'a [u8]),
    Int(i64),
    UInt(u64),
}

/// `<kind><len>\r\n`: an array (`*`) or bulk string (`$`) header.
pub(crate) fn write_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn write_bulk(out: &mut Vec<u8>, bytes: &[u8]) {
    write_header(out, b'$', bytes.len());
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
}

/// Append one command. A command needs at least one argument (its name).
pub fn pack_command(out: &mut Vec<u8>, args: &[Arg<'_>]) -> Result<(), CoreError> {
    if args.is_empty() {
        return Err(CoreError::InvalidArgument { reason: "a command needs at least one argument (its name)".into() });
    }
    write_header(out, b'*', args.len());
    for arg in args {
        match *arg {
            Arg::Bytes(b) => write_bulk(out, b),
            Arg::Int(i) => write_bulk(out, itoa::Buffer::new().format(i).as_bytes()),
            Arg::UInt(u) => write_bulk(out, itoa::Buffer::new().format(u).as_bytes()),
        }
    }
    Ok(())
}

/// Append several commands back to back; the error names the first empty one.
pub fn pack_commands(out: &mut Vec<u8>, commands: &[&[Arg<'_>]]) -> Result<(), CoreError> {
    for (index, args) in commands.iter().enumerate() {
        pack_command(out, args).map_err(|e| CoreError::InvalidArgument { reason: format!("command {index}: {e}") })?;
    }
    Ok(())
}

/// Append `PUBLISH channel payload` for each payload; the shared prefix is built once.
pub fn pack_publish(out: &mut Vec<u8>, channel: &[u8], payloads: &[&[u8]]) {
    let mut prefix = Vec::with_capacity(channel.len() + 32);
    prefix.extend_from_slice(b"*3\r\n$7\r\nPUBLISH\r\n");
    write_bulk(&mut prefix, channel);
    let body: usize = payloads.iter().map(|p| p.len() + 16).sum();
    out.reserve(prefix.len() * payloads.len() + body);
    for payload in payloads {
        out.extend_from_slice(&prefix);
        write_bulk(out, payload);
    }
}

/// Append one command per item: `prefix... item` (e.g. `XADD key * m <payload>`, `XACK key
/// group <id>`), the shared prefix built once. An empty prefix is refused (no command name).
pub fn pack_each(out: &mut Vec<u8>, prefix: &[Arg<'_>], items: &[&[u8]]) -> Result<(), CoreError> {
    pack_each_iter(out, prefix, items.iter().copied())
}

/// [`pack_each`] over any iterator of items (e.g. envelopes as they are encoded).
pub fn pack_each_iter<'i>(
    out: &mut Vec<u8>,
    prefix: &[Arg<'_>],
    items: impl Iterator<Item = &'i [u8]> + Clone,
) -> Result<(), CoreError> {
    let head = each_head(prefix)?;
    let (count, body) = items.clone().fold((0, 0), |(n, b), p| (n + 1, b + p.len() + 16));
    out.reserve(head.len() * count + body);
    for item in items {
        out.extend_from_slice(&head);
        write_bulk(out, item);
    }
    Ok(())
}

/// What [`pack_each`] writes before each item: the array header (`prefix` and one more
/// argument) and the prefix's bulk strings. The item then follows as one bulk string.
pub fn each_head(prefix: &[Arg<'_>]) -> Result<Vec<u8>, CoreError> {
    if prefix.is_empty() {
        return Err(CoreError::InvalidArgument { reason: "pack_each needs a command name in its prefix".into() });
    }
    let mut head = Vec::with_capacity(64);
    write_header(&mut head, b'*', prefix.len() + 1);
    for arg in prefix {
        match *arg {
            Arg::Bytes(b) => write_bulk(&mut head, b),
            Arg::Int(i) => write_bulk(&mut head, itoa::Buffer::new().format(i).as_bytes()),
            Arg::UInt(u) => write_bulk(&mut head, itoa::Buffer::new().format(u).as_bytes()),
        }
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pack_each_repeats_the_prefix() {
        let mut out = Vec::new();
        pack_each(&mut out, &[Arg::Bytes(b"XACK"), Arg::Bytes(b"k"), Arg::Int(7)], &[b"1-0", b"2-0"]).unwrap();
        let mut want = Vec::new();
        for id in [&b"1-0"[..], b"2-0"] {
            pack_command(&mut want, &[Arg::Bytes(b"XACK"), Arg::Bytes(b"k"), Arg::Int(7), Arg::Bytes(id)]).unwrap();
        }
        assert_eq!(out, want);
        assert!(pack_each(&mut out, &[], &[b"x"]).is_err());
    }
}
