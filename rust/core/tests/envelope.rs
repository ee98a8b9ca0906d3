#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::borrow::Cow;

use common::XorShift;
use lockstep_core::envelope::{self, BatchMeta, Codec, DataCheck, Kind, Layout, Meta, DEFAULT_MAX_SIZE};
use lockstep_core::resp::{self, Arg, Reply, RespParser};
use lockstep_core::CoreError;

fn meta<'a>(sender: &'a str, seq: u64, ts: f64, id: &'a str) -> Meta<'a> {
    Meta { sender: Cow::Borrowed(sender), seq, ts, id: Cow::Borrowed(id) }
}

fn batch<'a>(sender: &'a str, seq_start: u64, ts: f64, id_prefix: &'a str) -> BatchMeta<'a> {
    BatchMeta { sender, seq_start, ts, id_prefix, max_size: DEFAULT_MAX_SIZE }
}

fn reason(err: CoreError) -> String {
    match err {
        CoreError::Envelope { reason } => reason,
        other => panic!("expected an envelope error, got {other:?}"),
    }
}

fn decode_err(codec: Codec, payload: &[u8]) -> String {
    reason(envelope::decode(codec, payload, DEFAULT_MAX_SIZE).expect_err("should fail"))
}

#[test]
fn json_envelope_has_the_documented_bytes() {
    let out =
        envelope::encode(Codec::Json, br#"{"id":1}"#, &meta("agent-1", 7, 1700000000.5, "ab12-7"), DEFAULT_MAX_SIZE)
            .unwrap();
    assert_eq!(
        std::str::from_utf8(&out).unwrap(),
        r#"{"ls":1,"id":"ab12-7","from":"agent-1","seq":7,"ts":1700000000.5,"data":{"id":1}}"#
    );
}

#[test]
fn msgpack_envelope_is_a_six_entry_map_in_order() {
    let out = envelope::encode(Codec::Msgpack, &[0x01], &meta("a", 300, 2.0, "x-300"), DEFAULT_MAX_SIZE).unwrap();
    let mut want = vec![0x86, 0xa2, b'l', b's', 0x01, 0xa2, b'i', b'd', 0xa5];
    want.extend_from_slice(b"x-300");
    want.extend_from_slice(&[0xa4, b'f', b'r', b'o', b'm', 0xa1, b'a', 0xa3, b's', b'e', b'q', 0xcd, 0x01, 0x2c]);
    want.extend_from_slice(&[0xa2, b't', b's', 0xcb]);
    want.extend_from_slice(&2.0f64.to_be_bytes());
    want.extend_from_slice(&[0xa4, b'd', b'a', b't', b'a', 0x01]);
    assert_eq!(out, want);
}

#[test]
fn round_trips_in_both_codecs() {
    let cases: [(Codec, &[u8]); 6] = [
        (Codec::Json, br#"{"id":1,"timestamp":1700000000.25}"#),
        (Codec::Json, b"null"),
        (Codec::Json, br#""caf\u00e9 \"quoted\"""#),
        (Codec::Msgpack, &[0x82, 0xa2, b'i', b'd', 0x01, 0xa1, b't', 0xcb, 0, 0, 0, 0, 0, 0, 0, 0]),
        (Codec::Msgpack, &[0xc0]),
        (Codec::Msgpack, &[0x92, 0xc4, 0x02, 0xff, 0x00, 0xd6, 0x01, 1, 2, 3, 4]),
    ];
    for (codec, data) in cases {
        for (seq, ts) in [(0, 0.0), (1, -1.5), (u64::MAX, 1e300), (127, 1700000000.123456)] {
            let m = meta("sprint-1/agent@3", seq, ts, "k9Z-1");
            let out = envelope::encode(codec, data, &m, DEFAULT_MAX_SIZE).unwrap();
            let got = envelope::decode(codec, &out, DEFAULT_MAX_SIZE).unwrap();
            assert_eq!(got.kind, Kind::Envelope);
            assert_eq!(got.data, data);
            assert_eq!(got.meta, Some(m));
        }
    }
}

#[test]
fn batch_numbers_seq_and_ids_from_the_start() {
    let datas: Vec<&[u8]> = vec![b"1", b"[2]", br#"{"three":3}"#];
    for codec in [Codec::Json, Codec::Msgpack] {
        let datas: Vec<&[u8]> =
            if codec == Codec::Json { datas.clone() } else { vec![&[0x01], &[0x91, 0x02], &[0xc3]] };
        let batch = envelope::encode_batch(codec, &datas, &batch("me", 98, 5.5, "r4nd-"), Layout::BARE).unwrap();
        assert_eq!(batch.len(), 3);
        for (i, env) in batch.iter().enumerate() {
            let got = envelope::decode(codec, env, DEFAULT_MAX_SIZE).unwrap();
            let m = got.meta.unwrap();
            assert_eq!(m.seq, 98 + i as u64);
            assert_eq!(m.id, format!("r4nd-{}", 98 + i));
            assert_eq!(m.sender, "me");
            assert_eq!(got.data, datas[i]);
        }
        // a batch is the same bytes as one encode per item
        let one = envelope::encode(codec, datas[1], &meta("me", 99, 5.5, "r4nd-99"), DEFAULT_MAX_SIZE).unwrap();
        assert_eq!(batch.iter().nth(1).unwrap(), &one[..]);
    }
}

#[test]
fn a_framed_batch_is_one_command_per_envelope() {
    let datas: Vec<&[u8]> = vec![b"1", br#"{"s":"a,b]"}"#];
    let head = resp::each_head(&[Arg::Bytes(b"PUBLISH"), Arg::Bytes(b"chan")]).unwrap();
    let layout = Layout::new(&head, DataCheck::Shape);
    let framed = envelope::encode_batch(Codec::Json, &datas, &batch("me", 7, 1.5, "p-"), layout).unwrap();
    let bare = envelope::encode_batch(Codec::Json, &datas, &batch("me", 7, 1.5, "p-"), Layout::BARE).unwrap();
    let mut parser = RespParser::new(resp::DEFAULT_MAX_BULK, resp::DEFAULT_MAX_DEPTH).unwrap();
    parser.feed(&framed.buf).unwrap();
    for env in bare.iter() {
        let reply = parser.next_reply().unwrap().unwrap();
        assert_eq!(reply, Reply::Array(vec![Reply::Bulk(b"PUBLISH"), Reply::Bulk(b"chan"), Reply::Bulk(env)]));
    }
    assert!(parser.next_reply().unwrap().is_none());
    // data cut from an encoder's array is checked for its shape: nothing can spill out of it
    for bad in [&b"{\"open"[..], b"[1", b"1,2", b"\"a\":1", b""] {
        let err = envelope::encode_batch(Codec::Json, &[bad], &batch("me", 1, 0.0, "p-"), layout);
        assert!(reason(err.unwrap_err()).starts_with("item 0: data is not shaped like one JSON value"));
    }
}

#[test]
fn batch_errors_name_the_item_and_overflow() {
    let datas: Vec<&[u8]> = vec![b"1", b"{bad", b"3"];
    let err = envelope::encode_batch(Codec::Json, &datas, &batch("me", 1, 0.0, "p-"), Layout::BARE).unwrap_err();
    assert!(reason(err).starts_with("item 1: data is not one well-formed JSON value"));
    let err = envelope::encode_batch(Codec::Json, &[b"1", b"2"], &batch("me", u64::MAX, 0.0, "p-"), Layout::BARE)
        .unwrap_err();
    assert!(reason(err).contains("overflows"));
    assert!(envelope::encode_batch(Codec::Json, &[], &batch("me", u64::MAX, 0.0, "p-"), Layout::BARE)
        .unwrap()
        .is_empty());
    let err =
        envelope::encode_batch(Codec::Json, &[b"1"], &batch("me", 1, 0.0, "bad prefix-"), Layout::BARE).unwrap_err();
    assert!(matches!(err, CoreError::InvalidName { ref what, .. } if what == "message id"), "{err:?}");
}

#[test]
fn encode_rejects_bad_arguments() {
    let ok = meta("a", 1, 1.0, "i-1");
    assert!(reason(envelope::encode(Codec::Json, b"", &ok, DEFAULT_MAX_SIZE).unwrap_err()).contains("JSON"));
    assert!(envelope::encode(Codec::Json, b"{\"a\":", &ok, DEFAULT_MAX_SIZE).is_err());
    assert!(envelope::encode(Codec::Json, b"1 2", &ok, DEFAULT_MAX_SIZE).is_err());
    assert!(reason(envelope::encode(Codec::Msgpack, &[0x01, 0x02], &ok, DEFAULT_MAX_SIZE).unwrap_err())
        .contains("trailing"));
    assert!(envelope::encode(Codec::Msgpack, &[], &ok, DEFAULT_MAX_SIZE).is_err());
    assert!(envelope::encode(Codec::Msgpack, &[0xc1], &ok, DEFAULT_MAX_SIZE).is_err());
    let bad_utf8 = envelope::encode(Codec::Json, b"\"\xff\"", &ok, DEFAULT_MAX_SIZE).unwrap_err();
    assert!(reason(bad_utf8).contains("invalid UTF-8 at byte 1"));
    for ts in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let err = envelope::encode(Codec::Json, b"1", &meta("a", 1, ts, "i-1"), DEFAULT_MAX_SIZE).unwrap_err();
        assert!(reason(err).contains("finite"));
    }
    let err = envelope::encode(Codec::Json, b"1", &meta("a b", 1, 1.0, "i-1"), DEFAULT_MAX_SIZE).unwrap_err();
    assert!(matches!(err, CoreError::InvalidName { ref what, .. } if what == "sender"), "{err:?}");
    let err = envelope::encode(Codec::Json, b"1", &meta("a", 1, 1.0, ""), DEFAULT_MAX_SIZE).unwrap_err();
    assert!(matches!(err, CoreError::InvalidName { ref what, .. } if what == "message id"), "{err:?}");
    assert!(matches!(Codec::from_name("yaml"), Err(CoreError::UnknownCodec { .. })));
    assert_eq!(Codec::from_name("msgpack").unwrap(), Codec::Msgpack);
}

#[test]
fn size_limit_applies_to_encode_and_decode() {
    let m = meta("a", 1, 1.0, "i-1");
    let exact = envelope::encode(Codec::Json, b"12345", &m, DEFAULT_MAX_SIZE).unwrap();
    assert!(envelope::encode(Codec::Json, b"12345", &m, exact.len()).is_ok());
    let err = envelope::encode(Codec::Json, b"12345", &m, exact.len() - 1).unwrap_err();
    assert_eq!(err, CoreError::MessageTooLarge { size: exact.len(), limit: exact.len() - 1 });
    assert!(err.to_string().contains(&format!("{} bytes", exact.len())));
    let mp = envelope::encode(Codec::Msgpack, &[0xa3, b'a', b'b', b'c'], &m, DEFAULT_MAX_SIZE).unwrap();
    assert!(
        matches!(envelope::encode(Codec::Msgpack, &[0xa3, b'a', b'b', b'c'], &m, mp.len() - 1), Err(CoreError::MessageTooLarge { size, .. }) if size == mp.len())
    );
    assert_eq!(
        envelope::decode(Codec::Json, &exact, exact.len() - 1).unwrap_err(),
        CoreError::MessageTooLarge { size: exact.len(), limit: exact.len() - 1 }
    );
    assert!(matches!(
        envelope::decode(Codec::Json, b"hello", 4),
        Err(CoreError::MessageTooLarge { size: 5, limit: 4 })
    ));
}

#[test]
fn foreign_payloads_are_delivered_whole() {
    let cases: [(&[u8], Kind); 10] = [
        (br#"{"id":1}"#, Kind::Json),
        (b"[1,2,3]", Kind::Json),
        (b" 42 ", Kind::Json),
        (b"hello world", Kind::Text),
        (b"", Kind::Text),
        ("caf\u{e9}".as_bytes(), Kind::Text),
        (b"\xff\xfe\x00", Kind::Bytes),
        (b"\"\xff\"", Kind::Bytes),
        (br#"{"ls" :1}"#, Kind::Json),
        (br#"{"from":"x","ls":1}"#, Kind::Json),
    ];
    for (payload, kind) in cases {
        for codec in [Codec::Json, Codec::Msgpack] {
            let got = envelope::decode(codec, payload, DEFAULT_MAX_SIZE).unwrap();
            assert_eq!((got.kind, got.meta.is_none(), got.data), (kind, true, payload), "{payload:?}");
        }
    }
    // A msgpack envelope read as JSON is foreign bytes, and the other way round.
    let mp = envelope::encode(Codec::Msgpack, &[0x01], &meta("a", 1, 1.0, "i-1"), DEFAULT_MAX_SIZE).unwrap();
    assert_eq!(envelope::decode(Codec::Json, &mp, DEFAULT_MAX_SIZE).unwrap().kind, Kind::Bytes);
    let js = envelope::encode(Codec::Json, b"1", &meta("a", 1, 1.0, "i-1"), DEFAULT_MAX_SIZE).unwrap();
    assert_eq!(envelope::decode(Codec::Msgpack, &js, DEFAULT_MAX_SIZE).unwrap().kind, Kind::Json);
}

#[test]
fn malformed_json_envelopes_name_the_problem() {
    let good = r#""id":"i-1","from":"a","seq":1,"ts":1.5,"data":1"#;
    let cases: Vec<(String, &str)> = vec![
        (format!(r#"{{"ls":2,{good}}}"#), "ls=2"),
        (r#"{"ls": 3}"#.into(), "unsupported envelope version ls=3"),
        (r#"{"ls":0,"future":true}"#.into(), "unsupported envelope version ls=0"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1,"ts":1.5}"#.into(), "missing field `data`"),
        (format!(r#"{{"ls":1,{good},"extra":0}}"#), "unknown field `extra`"),
        (format!(r#"{{"ls":1,{good},"seq":2}}"#), "duplicate field `seq`"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":-1,"ts":1.5,"data":1}"#.into(), "-1"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":"1","ts":1.5,"data":1}"#.into(), "invalid type"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1.5,"ts":1.5,"data":1}"#.into(), "invalid type"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1,"ts":NaN,"data":1}"#.into(), "malformed JSON envelope"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1,"ts":"1","data":1}"#.into(), "invalid type"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1,"ts":1e999,"data":1}"#.into(), "out of range"),
        (format!(r#"{{"ls":1,{good}}} x"#), "trailing characters"),
        (format!(r#"{{"ls":1,{good}}}}}"#), "trailing characters"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1,"ts":1.5,"data":}"#.into(), "malformed JSON envelope"),
        (r#"{"ls":1,"id":"i-1","from":"a","seq":1,"ts":1.5,"data":[1,}"#.into(), "malformed JSON envelope"),
        (r#"{"ls":1,"id":"i 1","from":"a","seq":1,"ts":1.5,"data":1}"#.into(), "invalid message id name"),
        (r#"{"ls":1,"id":"i-1","from":"","seq":1,"ts":1.5,"data":1}"#.into(), "invalid sender name"),
        (r#"{"ls":1,"id":"i-1","from":7,"seq":1,"ts":1.5,"data":1}"#.into(), "invalid type"),
        (r#"{"ls":1"#.into(), "EOF"),
        (r#"{"ls":"#.into(), "EOF"),
    ];
    for (payload, want) in cases {
        let got = decode_err(Codec::Json, payload.as_bytes());
        assert!(got.contains(want), "{payload}: {got}");
    }
    // escaped names are unescaped, then validated
    let esc = br#"{"ls":1,"id":"\u0069-1","from":"a","seq":1,"ts":1,"data":1}"#;
    assert_eq!(envelope::decode(Codec::Json, esc, DEFAULT_MAX_SIZE).unwrap().meta.unwrap().id, "i-1");
    // key order is free after the marker, whitespace is fine
    let shuffled = br#"  {"ls": 1 , "data" : [1, 2], "ts":3, "seq":4, "from":"b", "id":"c"} "#;
    let got = envelope::decode(Codec::Json, shuffled, DEFAULT_MAX_SIZE).unwrap();
    assert_eq!((got.data, got.meta.unwrap().ts), (&b"[1, 2]"[..], 3.0));
}

fn mp_envelope(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = vec![0x80 | entries.len() as u8];
    for (k, v) in entries {
        out.push(0xa0 | k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(v);
    }
    out
}

#[test]
fn malformed_msgpack_envelopes_name_the_problem() {
    let ts = [&[0xcbu8][..], &1.5f64.to_be_bytes()].concat();
    let nan = [&[0xcbu8][..], &f64::NAN.to_be_bytes()].concat();
    let base = |over: &[(&'static str, Vec<u8>)]| {
        let mut fields: Vec<(&str, Vec<u8>)> = vec![
            ("ls", vec![0x01]),
            ("id", vec![0xa3, b'i', b'-', b'1']),
            ("from", vec![0xa1, b'a']),
            ("seq", vec![0x01]),
            ("ts", ts.clone()),
            ("data", vec![0xc0]),
        ];
        for (k, v) in over {
            if let Some(slot) = fields.iter_mut().find(|(name, _)| name == k) {
                slot.1 = v.clone();
            }
        }
        let refs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, &v[..])).collect();
        mp_envelope(&refs)
    };
    assert!(envelope::decode(Codec::Msgpack, &base(&[]), DEFAULT_MAX_SIZE).is_ok());
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (base(&[("ls", vec![0x02])]), "ls=2"),
        (base(&[("seq", vec![0xff])]), "negative"),
        (base(&[("seq", vec![0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0])]), "negative"),
        (base(&[("seq", vec![0xa1, b'1'])]), "not a msgpack integer"),
        (base(&[("ts", nan)]), "NaN"),
        (base(&[("ts", vec![0xc0])]), "not a msgpack number"),
        (base(&[("id", vec![0x01])]), "not a msgpack string"),
        (base(&[("id", vec![0xa2, 0xff, 0xfe])]), "UTF-8"),
        (base(&[("from", vec![0xa2, b'a', b' '])]), "invalid sender name"),
        (base(&[("data", vec![0xc1])]), "0xc1"),
        (base(&[("data", vec![0x92, 0x01])]), "truncated"),
        ([base(&[]), vec![0x00]].concat(), "trailing"),
        (
            mp_envelope(&[
                ("ls", &[0x01]),
                ("id", &[0xa1, b'i']),
                ("id", &[0xa1, b'i']),
                ("seq", &[1]),
                ("ts", &[1]),
                ("data", &[1]),
            ]),
            "duplicate key",
        ),
        (
            mp_envelope(&[
                ("ls", &[0x01]),
                ("id", &[0xa1, b'i']),
                ("who", &[0xa1, b'i']),
                ("seq", &[1]),
                ("ts", &[1]),
                ("data", &[1]),
            ]),
            "unexpected key",
        ),
        (vec![0x86, 0xa2, b'l', b's'], "truncated"),
    ];
    for (payload, want) in cases {
        let got = decode_err(Codec::Msgpack, &payload);
        assert!(got.contains(want), "{payload:?}: {got}");
    }
}

#[test]
fn msgpack_data_of_every_type_is_skipped_exactly() {
    let mut data = vec![0xdc, 0x00, 0x1e]; // array16 of 30
    data.extend_from_slice(&[0xc0, 0xc2, 0xc3, 0x05, 0xe0, 0xcc, 1, 0xcd, 1, 2, 0xce, 1, 2, 3, 4]);
    data.extend_from_slice(&[0xcf, 1, 2, 3, 4, 5, 6, 7, 8, 0xd0, 1, 0xd1, 1, 2, 0xd2, 1, 2, 3, 4]);
    data.extend_from_slice(&[0xd3, 1, 2, 3, 4, 5, 6, 7, 8, 0xca, 1, 2, 3, 4, 0xcb, 1, 2, 3, 4, 5, 6, 7, 8]);
    data.extend_from_slice(&[0xd9, 2, b'h', b'i', 0xda, 0, 1, b'x', 0xdb, 0, 0, 0, 1, b'y']);
    data.extend_from_slice(&[0xc4, 1, 0, 0xc5, 0, 1, 0, 0xc6, 0, 0, 0, 1, 0]);
    data.extend_from_slice(&[0xc7, 1, 5, 0, 0xc8, 0, 1, 5, 0, 0xc9, 0, 0, 0, 1, 5, 0]);
    data.extend_from_slice(&[0xd4, 5, 0, 0xd5, 5, 0, 0, 0xd8, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    // map16 of 1 pair, map32 of 0, array32 of 0
    data.extend_from_slice(&[0xde, 0, 1, 0xa1, b'k', 0x81, 0xa0, 0x90]);
    data.extend_from_slice(&[0xdf, 0, 0, 0, 0]);
    data.extend_from_slice(&[0xdd, 0, 0, 0, 0]);
    let env = envelope::encode(Codec::Msgpack, &data, &meta("a", 1, 1.0, "i-1"), DEFAULT_MAX_SIZE).unwrap();
    assert_eq!(envelope::decode(Codec::Msgpack, &env, DEFAULT_MAX_SIZE).unwrap().data, &data[..]);
}

#[test]
fn nesting_is_bounded() {
    let m = meta("a", 1, 1.0, "i-1");
    let nest = |depth: usize, open: u8, close: &[u8]| {
        let mut d = vec![open; depth];
        d.extend_from_slice(close);
        d
    };
    assert!(envelope::encode(Codec::Msgpack, &nest(128, 0x91, &[0xc0]), &m, DEFAULT_MAX_SIZE).is_ok());
    assert!(reason(envelope::encode(Codec::Msgpack, &nest(129, 0x91, &[0xc0]), &m, DEFAULT_MAX_SIZE).unwrap_err())
        .contains("deeper"));
    // serde_json skips JSON iteratively, so deep JSON data is bounded by max_size only
    let deep_json = [vec![b'['; 5000], vec![b']'; 5000]].concat();
    assert!(envelope::encode(Codec::Json, &deep_json, &m, DEFAULT_MAX_SIZE).is_ok());
    // a hostile payload deep enough to blow a recursive decoder's stack
    let mut hostile = vec![0x86, 0xa2, b'l', b's', 1, 0xa4, b'd', b'a', b't', b'a'];
    hostile.extend(std::iter::repeat_n(0x91, 1_000_000));
    assert!(decode_err(Codec::Msgpack, &hostile).contains("deeper"));
    let deep_data = [vec![b'['; 400_000], vec![b']'; 400_000]].concat();
    let deep_env = envelope::encode(Codec::Json, &deep_data, &m, DEFAULT_MAX_SIZE).unwrap();
    assert_eq!(envelope::decode(Codec::Json, &deep_env, DEFAULT_MAX_SIZE).unwrap().data, &deep_data[..]);
    let hostile_json = [&br#"{"ls":1,"data":"#[..], &vec![b'['; 1_000_000]].concat();
    assert!(decode_err(Codec::Json, &hostile_json).contains("EOF"));
}

#[test]
fn every_truncation_is_an_error_never_a_panic() {
    for codec in [Codec::Json, Codec::Msgpack] {
        let data: &[u8] = if codec == Codec::Json {
            br#"{"k":[1,2.5,"x",null,true]}"#
        } else {
            &[0x81, 0xa1, b'k', 0x93, 1, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0]
        };
        let env = envelope::encode(codec, data, &meta("agent-1", 123456, 1700000000.75, "x7-123456"), DEFAULT_MAX_SIZE)
            .unwrap();
        let marker = if codec == Codec::Json { 6 } else { 4 };
        for cut in 0..env.len() {
            let got = envelope::decode(codec, &env[..cut], DEFAULT_MAX_SIZE);
            if cut < marker {
                assert!(got.unwrap().meta.is_none(), "{codec:?} cut {cut}");
            } else {
                assert!(matches!(got, Err(CoreError::Envelope { .. })), "{codec:?} cut {cut}: {got:?}");
            }
        }
    }
}

#[test]
fn random_and_mutated_payloads_never_panic() {
    let mut rng = XorShift::new(0x5eed);
    let json_env =
        envelope::encode(Codec::Json, br#"{"a":[1,"b"]}"#, &meta("s", 9, 1.25, "p-9"), DEFAULT_MAX_SIZE).unwrap();
    let mp_env =
        envelope::encode(Codec::Msgpack, &[0x92, 0x01, 0xa1, b'b'], &meta("s", 9, 1.25, "p-9"), DEFAULT_MAX_SIZE)
            .unwrap();
    let alphabet = br#"{}[]":,0123456789.-eE lsidfromseqtsdata\u"#;
    for round in 0..20_000 {
        let payload = match round % 4 {
            0 => rng.bytes(64),
            1 => [&b"{\"ls\":"[..], &rng.bytes_from(alphabet, 80)].concat(),
            2 => [&[0x86, 0xa2, b'l', b's'][..], &rng.bytes(60)].concat(),
            _ => {
                let mut p = if round % 8 == 3 { json_env.clone() } else { mp_env.clone() };
                for _ in 0..=rng.below(3) {
                    let i = rng.below(p.len());
                    p[i] = rng.next_u64() as u8;
                }
                p
            }
        };
        for codec in [Codec::Json, Codec::Msgpack] {
            match envelope::decode(codec, &payload, DEFAULT_MAX_SIZE) {
                Ok(d) => {
                    assert!(payload.windows(d.data.len().max(1)).any(|w| w == d.data) || d.data.is_empty());
                    assert_eq!(d.meta.is_some(), d.kind == Kind::Envelope);
                }
                Err(e) => assert!(matches!(e, CoreError::Envelope { .. }), "{e:?}"),
            }
        }
    }
}

#[test]
fn decode_batch_keeps_good_items_around_a_bad_one() {
    let good = envelope::encode(Codec::Json, b"1", &meta("a", 1, 1.0, "i-1"), DEFAULT_MAX_SIZE).unwrap();
    let payloads: Vec<&[u8]> = vec![&good, br#"{"ls":1}"#, b"plain", &good];
    let out = envelope::decode_batch(Codec::Json, &payloads, DEFAULT_MAX_SIZE);
    assert_eq!(out.len(), 4);
    assert!(out[0].is_ok() && out[1].is_err() && out[3].is_ok());
    assert_eq!(out[2].as_ref().unwrap().kind, Kind::Text);
}

#[test]
fn ts_survives_the_json_round_trip_bit_for_bit() {
    let mut rng = XorShift::new(99);
    let mut values =
        vec![5.960464477539063e-08, 1700000000.123456, f64::MIN_POSITIVE, f64::MAX, -0.0, 1e-300, 0.1 + 0.2];
    values.extend((0..5000).map(|_| f64::from_bits(rng.next_u64())).filter(|v| v.is_finite()));
    for ts in values {
        let out = envelope::encode(Codec::Json, b"1", &meta("a", 1, ts, "i-1"), DEFAULT_MAX_SIZE).unwrap();
        let got = envelope::decode(Codec::Json, &out, DEFAULT_MAX_SIZE).unwrap().meta.unwrap().ts;
        assert_eq!(got.to_bits(), ts.to_bits(), "{ts:e}");
    }
}

/// A memo carried from payload to payload (as a batch reader keeps it) never changes a result:
/// a sender remembered as valid does not let an invalid one through, nor does a remembered
/// `ts` text stand for a longer number that starts with it.
#[test]
fn a_batch_memo_changes_no_result() {
    let payload = |id: &str, from: &str, ts: &str| {
        format!(r#"{{"ls":1,"id":"{id}","from":"{from}","seq":1,"ts":{ts},"data":1}}"#).into_bytes()
    };
    let cases = [
        payload("p-1", "agent", "1.5"),
        payload("p-1", "agent", "1.5"),
        payload("p-1", "bad name", "1.5"),
        payload("p-1", "", "1.5"),
        payload("p-1", "agent", "1.5e3"),
        payload("p-1", "agent", "1.55"),
        payload("p-1", "agent", "1.5"),
        payload("bad id", "agent", "1.5"),
        payload("p-1", "agent", "-1.5"),
    ];
    let mut memo = envelope::Memo::default();
    for p in &cases {
        let remembered = envelope::decode_for_batch(Codec::Json, p, DEFAULT_MAX_SIZE, &mut memo);
        let fresh = envelope::decode_for_batch(Codec::Json, p, DEFAULT_MAX_SIZE, &mut envelope::Memo::default());
        assert_eq!(remembered.is_ok(), fresh.is_ok(), "{}", String::from_utf8_lossy(p));
        if let (Ok(a), Ok(b)) = (&remembered, &fresh) {
            assert_eq!(a, b);
        }
    }
    let ts = |p: &[u8], memo: &mut envelope::Memo| {
        envelope::decode_for_batch(Codec::Json, p, DEFAULT_MAX_SIZE, memo).unwrap().meta.unwrap().ts
    };
    let mut memo = envelope::Memo::default();
    assert_eq!(ts(&cases[0], &mut memo), 1.5);
    assert_eq!(ts(&cases[4], &mut memo), 1500.0);
    assert_eq!(ts(&cases[5], &mut memo), 1.55);
    assert!(envelope::decode_for_batch(Codec::Json, &cases[2], DEFAULT_MAX_SIZE, &mut memo).is_err());
}
