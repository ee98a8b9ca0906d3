"""Rows for the Rust envelope codec: speed on the seed's messages, and bad input refused."""

from __future__ import annotations

import time

from .. import _core
from ..envelope import EnvelopeCodec
from ..errors import LockstepError
from . import CheckContext, CheckResult, check
from .stats import human, rate

MESSAGES = 10_000
CODEC_FLOOR = 100_000  # msg/s: ten times the seed's 10 K msg/s, so the codec is never the limit


@check(
    "codec",
    title="envelope codec round trip",
    source="Assumption 1 (messages are small JSON objects)",
    target=f"{MESSAGES:,} seed messages intact, over {CODEC_FLOOR:,} msg/s",
)
async def codec_round_trip(ctx: CheckContext) -> CheckResult:
    codec = EnvelopeCodec(sender="lockstep-check")
    items = [{"id": i, "timestamp": time.time()} for i in range(MESSAGES)]
    started = time.perf_counter()
    payloads = codec.encode_many(items)
    decoded = codec.decode_many("sprint:coordination", payloads)
    elapsed = time.perf_counter() - started
    broken = [m for m, item in zip(decoded, items, strict=True) if isinstance(m, Exception) or m.data != item]
    seqs = [m.seq for m in decoded if not isinstance(m, Exception) and m.seq is not None]
    in_order = len(seqs) == MESSAGES and seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    speed = rate(MESSAGES, elapsed)
    return CheckResult(
        passed=not broken and in_order and speed >= CODEC_FLOOR,
        measured=human(speed, "msg/s") + " encode+decode",
        detail=f"{len(broken)} messages damaged" if broken else ("" if in_order else "sequence numbers out of order"),
        figures={"msg_per_s": speed},
    )


MALFORMED_ENVELOPES = [
    b'{"ls":1,"id":"a-1","from":"x","seq":1,"ts":1.0,"data":',  # truncated
    b'{"ls":1,"id":"a-1","from":"x","seq":-1,"ts":1.0,"data":1}',  # negative seq
    b'{"ls":2,"id":"a-1","from":"x","seq":1,"ts":1.0,"data":1}',  # unknown version
    b'{"ls":1,"id":"a 1","from":"x","seq":1,"ts":1.0,"data":1}',  # bad id
    b'{"ls":1}',  # fields missing
]
MALFORMED_RESP = [b"*2\r\n$3\r\nfoo\r\n:x\r\n", b"$-5\r\n", b"?what\r\n"]
BAD_NAMES = ["", "has space", "{tag}", "x" * 201, "glob*"]


@check(
    "bad-input",
    title="malformed input gets a typed error",
    source="Reliability promise 7",
    target="every malformed envelope, RESP frame and name raises a lockstep error; no panic",
)
async def malformed_input(ctx: CheckContext) -> CheckResult:
    codec = EnvelopeCodec(sender="lockstep-check")
    untyped: list[str] = []
    total = 0

    def expect_error(label: str, call: object) -> None:
        nonlocal total
        total += 1
        try:
            call()  # type: ignore[operator]
        except LockstepError:
            return
        except BaseException as exc:  # a panic surfaces as pyo3's PanicException (a BaseException)
            untyped.append(f"{label}: {type(exc).__name__}")
            return
        untyped.append(f"{label}: accepted")

    for i, payload in enumerate(MALFORMED_ENVELOPES):
        expect_error(f"envelope {i}", lambda p=payload: codec.decode("c", p))
    for i, frame in enumerate(MALFORMED_RESP):

        def parse(f: bytes = frame) -> None:
            parser = _core.RespParser()
            parser.feed(f)
            parser.drain()

        expect_error(f"resp {i}", parse)
    for name in BAD_NAMES:
        expect_error(f"name {name[:12]!r}", lambda n=name: _core.validate_name(n, "channel"))
    expect_error("oversized", lambda: codec.encode("x" * (_core.DEFAULT_MAX_SIZE + 1)))
    return CheckResult(
        passed=not untyped,
        measured=f"{total - len(untyped)}/{total} refused with a typed error",
        detail="; ".join(untyped),
        figures={"typed": float(total - len(untyped)), "total": float(total)},
    )
