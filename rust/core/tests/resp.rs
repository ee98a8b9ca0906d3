#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::XorShift;
use lockstep_core::resp::{self, Arg, Reply, RespParser, DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH};
use lockstep_core::CoreError;

fn parser() -> RespParser {
    RespParser::new(DEFAULT_MAX_BULK, DEFAULT_MAX_DEPTH).unwrap()
}

/// Every complete reply, as Debug text (replies borrow the parser, so tests compare text).
fn drain(p: &mut RespParser) -> Result<Vec<String>, CoreError> {
    let mut out = Vec::new();
    while let Some(r) = p.next_reply()? {
        out.push(format!("{r:?}"));
    }
    Ok(out)
}

fn parse_all(bytes: &[u8]) -> Result<Vec<String>, CoreError> {
    let mut p = parser();
    p.feed(bytes)?;
    drain(&mut p)
}

fn protocol_err(bytes: &[u8]) -> (u64, String) {
    match parse_all(bytes) {
        Err(CoreError::Protocol { offset, reason }) => (offset, reason),
        other => panic!("expected a protocol error for {bytes:?}, got {other:?}"),
    }
}

#[test]
fn packs_commands_as_arrays_of_bulk_strings() {
    let mut out = Vec::new();
    resp::pack_command(&mut out, &[Arg::Bytes(b"SET"), Arg::Bytes(b"k"), Arg::Int(-12), Arg::UInt(u64::MAX)]).unwrap();
    assert_eq!(out, b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n-12\r\n$20\r\n18446744073709551615\r\n");
    let mut two = Vec::new();
    resp::pack_commands(&mut two, &[&[Arg::Bytes(b"PING")], &[Arg::Bytes(b"ECHO"), Arg::Bytes(b"")]]).unwrap();
    assert_eq!(two, b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$0\r\n\r\n");
    let err = resp::pack_commands(&mut Vec::new(), &[&[Arg::Bytes(b"PING")], &[]]).unwrap_err();
    assert!(matches!(err, CoreError::InvalidArgument { ref reason } if reason.starts_with("command 1")), "{err:?}");
}

#[test]
fn pack_publish_equals_one_publish_per_payload() {
    let payloads: Vec<&[u8]> = vec![b"a", b"", b"\r\n\x00binary"];
    let mut fast = Vec::new();
    resp::pack_publish(&mut fast, b"chan:1", &payloads);
    let mut slow = Vec::new();
    for p in &payloads {
        resp::pack_command(&mut slow, &[Arg::Bytes(b"PUBLISH"), Arg::Bytes(b"chan:1"), Arg::Bytes(p)]).unwrap();
    }
    assert_eq!(fast, slow);
    // and it parses back as three arrays
    assert_eq!(parse_all(&fast).unwrap().len(), 3);
}

#[test]
fn parses_every_resp2_type() {
    let got = parse_all(
        b"+OK\r\n-ERR wrong\r\n:-42\r\n$5\r\nhe\r\no\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n*2\r\n*1\r\n:1\r\n$1\r\nx\r\n",
    )
    .unwrap();
    let want = [
        Reply::Simple(b"OK"),
        Reply::Error(b"ERR wrong"),
        Reply::Integer(-42),
        Reply::Bulk(b"he\r\no"),
        Reply::Bulk(b""),
        Reply::Nil,
        Reply::Nil,
        Reply::Array(vec![]),
        Reply::Array(vec![Reply::Array(vec![Reply::Integer(1)]), Reply::Bulk(b"x")]),
    ];
    assert_eq!(got, want.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>());
    assert_eq!(parse_all(b":9223372036854775807\r\n:-9223372036854775808\r\n").unwrap().len(), 2);
}

#[test]
fn parses_the_resp3_types_it_documents() {
    let got = parse_all(b"_\r\n#t\r\n#f\r\n,1.5\r\n,-inf\r\n%1\r\n+k\r\n:1\r\n~1\r\n:2\r\n>2\r\n+message\r\n$1\r\nm\r\n=8\r\ntxt:abcd\r\n!3\r\nERR\r\n").unwrap();
    let want = [
        Reply::Nil,
        Reply::Boolean(true),
        Reply::Boolean(false),
        Reply::Double(1.5),
        Reply::Double(f64::NEG_INFINITY),
        Reply::Map(vec![(Reply::Simple(b"k"), Reply::Integer(1))]),
        Reply::Set(vec![Reply::Integer(2)]),
        Reply::Push(vec![Reply::Simple(b"message"), Reply::Bulk(b"m")]),
        Reply::Bulk(b"abcd"),
        Reply::Error(b"ERR"),
    ];
    assert_eq!(got, want.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>());
    assert!(protocol_err(b"(123\r\n").1.contains("not supported"));
    assert!(protocol_err(b"|1\r\n+a\r\n+b\r\n").1.contains("not supported"));
}

const STREAM: &[u8] = b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$8\r\n{\"id\":1}\r\n+OK\r\n*2\r\n*2\r\n:1\r\n$-1\r\n-ERR x\r\n:7\r\n%1\r\n$1\r\nk\r\n*1\r\n_\r\n";

#[test]
fn every_split_point_gives_the_same_replies() {
    let whole = parse_all(STREAM).unwrap();
    assert_eq!(whole.len(), 5);
    for cut in 0..=STREAM.len() {
        let mut p = parser();
        p.feed(&STREAM[..cut]).unwrap();
        let mut got = drain(&mut p).unwrap();
        p.feed(&STREAM[cut..]).unwrap();
        got.extend(drain(&mut p).unwrap());
        assert_eq!(got, whole, "cut at {cut}");
        assert_eq!(p.buffered(), 0);
    }
    let mut p = parser();
    let mut got = Vec::new();
    for b in STREAM {
        p.feed(std::slice::from_ref(b)).unwrap();
        got.extend(drain(&mut p).unwrap());
    }
    assert_eq!(got, whole);
}

#[test]
fn buffered_counts_unparsed_bytes() {
    let mut p = parser();
    p.feed(b"+OK\r\n$5\r\nhel").unwrap();
    assert_eq!(p.buffered(), 12);
    assert_eq!(drain(&mut p).unwrap().len(), 1);
    assert_eq!(p.buffered(), 7);
    p.feed(b"lo\r\n").unwrap();
    assert_eq!(drain(&mut p).unwrap(), vec![format!("{:?}", Reply::Bulk(b"hello"))]);
    assert_eq!(p.buffered(), 0);
}

#[test]
fn big_replies_in_small_chunks_and_compaction() {
    // a 3 MB bulk and a 20 000-item array, fed in 1000-byte chunks, many times over
    let big = vec![b'z'; 3_000_000];
    let mut stream = Vec::new();
    resp::pack_command(&mut stream, &[Arg::Bytes(&big)]).unwrap();
    stream.extend_from_slice(b"*20000\r\n");
    for i in 0..20_000 {
        stream.extend_from_slice(format!(":{i}\r\n").as_bytes());
    }
    let mut p = parser();
    let mut count = 0;
    for _ in 0..3 {
        for chunk in stream.chunks(1000) {
            p.feed(chunk).unwrap();
            while let Some(r) = p.next_reply().unwrap() {
                match r {
                    Reply::Array(items) if items.len() == 1 => assert_eq!(items[0], Reply::Bulk(&big)),
                    Reply::Array(items) => assert_eq!(items[19_999], Reply::Integer(19_999)),
                    other => panic!("{other:?}"),
                }
                count += 1;
            }
        }
    }
    assert_eq!(count, 6);
    // offsets stay absolute after compaction
    p.feed(b"?").unwrap();
    match p.next_reply() {
        Err(CoreError::Protocol { offset, .. }) => assert_eq!(offset, 3 * stream.len() as u64),
        other => panic!("{other:?}"),
    }
}

#[test]
fn malformed_input_names_the_offset_and_what_was_expected() {
    let cases: [(&[u8], u64, &str); 16] = [
        (b"?x\r\n", 0, "expected a RESP type byte"),
        (b"+OK\r\nxx\r\n", 5, "expected a RESP type byte"),
        (b"+OK\rx", 4, "expected \\n after \\r"),
        (b":12a\r\n", 1, "expected an integer"),
        (b":\r\n", 1, "expected an integer"),
        (b":99999999999999999999\r\n", 1, "expected an integer"),
        (b"$-2\r\n", 1, "-1 or more"),
        (b"$abc\r\n", 1, "expected a length"),
        (b"$3\r\nabcd\r\n", 7, "expected CRLF after a bulk string of 3 bytes"),
        (b"*1\r\n$1\r\nab", 9, "expected CRLF"),
        (b"*x\r\n", 1, "expected a length"),
        (b"%-1\r\n", 1, "cannot be null"),
        (b"#x\r\n", 1, "boolean"),
        (b",abc\r\n", 1, "double"),
        (b"_x\r\n", 1, "'_'"),
        (b"=3\r\nabc\r\n", 4, "verbatim"),
    ];
    for (bytes, offset, want) in cases {
        let (got_offset, reason) = protocol_err(bytes);
        assert!(reason.contains(want), "{bytes:?}: {reason}");
        assert_eq!(got_offset, offset, "{bytes:?}: {reason}");
    }
}

#[test]
fn limits_on_bulk_size_depth_and_line_length() {
    let mut p = RespParser::new(10, 3).unwrap();
    p.feed(b"$11\r\n").unwrap();
    let err = p.next_reply().unwrap_err();
    assert!(err.to_string().contains("over the limit of 10 bytes"), "{err}");

    let mut p = RespParser::new(10, 3).unwrap();
    p.feed(b"*1\r\n*1\r\n*1\r\n:1\r\n").unwrap();
    assert_eq!(drain(&mut p).unwrap().len(), 1);
    p.feed(b"*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n").unwrap();
    assert!(drain(&mut p).unwrap_err().to_string().contains("deeper than 3"));

    // deep nesting arriving slowly is caught by the scanner too
    let mut p = RespParser::new(10, 3).unwrap();
    p.feed(b"*1\r\n*1\r\n*1\r\n*1\r\n").unwrap();
    assert!(drain(&mut p).unwrap_err().to_string().contains("deeper than 3"));

    let mut p = parser();
    p.feed(&vec![b'+'; resp::MAX_LINE + 2]).unwrap();
    assert!(drain(&mut p).unwrap_err().to_string().contains("without CRLF"));

    assert!(RespParser::new(10, 0).is_err());
    assert!(RespParser::new(10, resp::MAX_DEPTH_LIMIT + 1).is_err());
    // a huge claimed array length costs nothing until items arrive
    let mut p = parser();
    p.feed(b"*9223372036854775807\r\n:1\r\n").unwrap();
    assert!(drain(&mut p).unwrap().is_empty());
}

#[test]
fn a_failed_parser_stays_failed() {
    let mut p = parser();
    p.feed(b"+OK\r\n??").unwrap();
    assert!(p.next_reply().unwrap().is_some());
    let first = p.next_reply().unwrap_err();
    assert_eq!(p.next_reply().unwrap_err(), first);
    assert_eq!(p.feed(b"+OK\r\n").unwrap_err(), first);
    assert_eq!(p.error(), Some(&first));
}

#[test]
fn every_truncation_is_incomplete_not_an_error() {
    for cut in 0..STREAM.len() {
        let mut p = parser();
        p.feed(&STREAM[..cut]).unwrap();
        assert!(drain(&mut p).is_ok(), "cut {cut}");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = XorShift::new(42);
    let alphabet = b"+-:$*_#,%~>=!\r\n0123456789-1tf";
    for round in 0..30_000 {
        let bytes = if round % 2 == 0 { rng.bytes(48) } else { rng.bytes_from(alphabet, 64) };
        let mut p = RespParser::new(1024, 8).unwrap();
        let mut failed = false;
        for chunk in bytes.chunks(1 + rng.below(8)) {
            if p.feed(chunk).is_err() {
                failed = true;
                break;
            }
            if let Err(e) = drain(&mut p) {
                assert!(matches!(e, CoreError::Protocol { offset, .. } if offset <= bytes.len() as u64), "{e:?}");
                failed = true;
                break;
            }
        }
        if failed {
            assert!(p.error().is_some());
        }
    }
}

#[test]
fn mutated_valid_streams_never_panic() {
    let mut rng = XorShift::new(7);
    for _ in 0..20_000 {
        let mut bytes = STREAM.to_vec();
        for _ in 0..=rng.below(3) {
            let i = rng.below(bytes.len());
            bytes[i] = rng.next_u64() as u8;
        }
        let mut p = parser();
        for chunk in bytes.chunks(1 + rng.below(16)) {
            if p.feed(chunk).is_err() || drain(&mut p).is_err() {
                break;
            }
        }
    }
}

/// The subscriber's fast path reads exactly what the general parser reads, in any chunking,
/// and leaves everything else (other replies, partial frames, odd lengths) to it.
#[test]
fn message_frames_fast_path_agrees_with_the_general_parser() {
    let mut stream = Vec::new();
    for (i, payload) in [&b"{\"a\":1}"[..], b"", b"x\r\ny", b"\xff"].iter().enumerate() {
        resp::pack_command(&mut stream, &[Arg::Bytes(b"message"), Arg::Bytes(b"chan"), Arg::Bytes(payload)]).unwrap();
        if i == 1 {
            stream.extend_from_slice(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n");
        }
    }
    let expected = parse_all(&stream).unwrap();
    for chunk in [1, 3, 7, stream.len()] {
        let mut p = parser();
        let mut got = Vec::new();
        for part in stream.chunks(chunk) {
            p.feed(part).unwrap();
            loop {
                if let Some((channel, payload)) = p.next_message_frame() {
                    let reply = Reply::Array(vec![Reply::Bulk(b"message"), Reply::Bulk(channel), Reply::Bulk(payload)]);
                    got.push(format!("{reply:?}"));
                    continue;
                }
                match p.next_reply().unwrap() {
                    Some(reply) => got.push(format!("{reply:?}")),
                    None => break,
                }
            }
        }
        assert_eq!(got, expected, "chunk size {chunk}");
    }
    let mut p = parser();
    p.feed(b"*3\r\n$7\r\nmessage\r\n$04\r\nchan\r\n$1\r\nx\r\n").unwrap();
    assert!(p.next_message_frame().is_some(), "a leading zero in a length is still a length");
    let mut p = RespParser::new(4, DEFAULT_MAX_DEPTH).unwrap();
    p.feed(b"*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$5\r\nhello\r\n").unwrap();
    assert!(p.next_message_frame().is_none(), "over max_bulk: the general parser refuses it");
    assert!(matches!(p.next_reply(), Err(CoreError::Protocol { .. })));
}

/// `skip_plain` consumes exactly the plain integers and bulks a general read would, stops
/// at anything else (an error reply, nil, an array, a huge integer, an incomplete reply),
/// and leaves what follows to `next_reply`, at every split point.
#[test]
fn skipping_plain_replies_stops_where_they_end() {
    let stream: &[u8] =
        b":1\r\n$3\r\nabc\r\n:0\r\n-ERR no\r\n:7\r\n$-1\r\n*1\r\n:2\r\n:1234567890123456789\r\n$0\r\n\r\n:3\r\n";
    let whole = parse_all(stream).unwrap();
    for split in 0..=stream.len() {
        let mut p = parser();
        p.feed(&stream[..split]).unwrap();
        let mut seen = Vec::new();
        let mut fed_rest = false;
        loop {
            let skipped = p.skip_plain(usize::MAX);
            seen.extend(std::iter::repeat_n(String::from("plain"), skipped));
            match p.next_reply().unwrap() {
                Some(reply) => seen.push(format!("{reply:?}")),
                None if !fed_rest => {
                    p.feed(&stream[split..]).unwrap();
                    fed_rest = true;
                }
                None => break,
            }
        }
        assert_eq!(seen.len(), whole.len(), "split at {split}: {seen:?}");
        for (got, want) in seen.iter().zip(&whole) {
            let plain = want.starts_with("Integer") || want.starts_with("Bulk");
            assert!(got == want || (got == "plain" && plain), "split at {split}: {got} for {want}");
        }
    }
    let mut p = parser();
    p.feed(b":1\r\n:2\r\n:3\r\n").unwrap();
    assert_eq!(p.skip_plain(2), 2, "at most max");
    assert_eq!(p.next_reply().unwrap(), Some(Reply::Integer(3)));
    let mut p = parser();
    p.feed(b":12345678901234567890\r\n").unwrap();
    assert_eq!(p.skip_plain(1), 0, "an integer out of range is left to the general read");
    assert!(p.next_reply().is_err());
}
