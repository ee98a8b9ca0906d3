"""Envelope codec: lockstep (msgspec + Rust) vs what a user would otherwise write.

Each benchmark encodes and then decodes a batch of 1000 seed-sized messages
(``{"id": i, "timestamp": ...}``) as full envelopes (sender, seq, ts, id, data).

    .venv/bin/pytest benches/bench_codec.py --benchmark-group-by=group --benchmark-columns=min,median,ops

Baselines, measured in the same run:
- ``json-stdlib``: ``json.dumps`` of a dict envelope, ``json.loads`` back (the seed's way);
- ``msgspec-struct``: a pure-Python envelope as a ``msgspec.Struct`` (the strongest
  pure-Python option), for honesty about where the Rust core's gain comes from.

``test_ratio_report`` prints the medians side by side. Benchmarks are not timed tests:
they assert that the round trip is correct, never that it is fast.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from lockstep.envelope import EnvelopeCodec, Message

N = 1000
CHANNEL = "sprint:coordination"
ITEMS: list[dict[str, Any]] = [{"id": i, "timestamp": 1700000000.0 + i / 1000} for i in range(N)]


def lockstep_round_trip(codec: EnvelopeCodec) -> list[Message | Exception]:
    return list(codec.decode_many(CHANNEL, codec.encode_many(ITEMS)))


def json_stdlib_round_trip() -> list[dict[str, Any]]:
    now = time.time()
    payloads = [
        json.dumps(
            {"ls": 1, "id": f"abcd1234-{i + 1}", "from": "agent-7", "seq": i + 1, "ts": now, "data": item}
        ).encode()
        for i, item in enumerate(ITEMS)
    ]
    return [json.loads(p) for p in payloads]


class StructEnvelope(msgspec.Struct):
    ls: int
    id: str
    sender: str = msgspec.field(name="from")
    seq: int = 0
    ts: float = 0.0
    data: Any = None


_struct_encoder = msgspec.json.Encoder()
_struct_decoder = msgspec.json.Decoder(StructEnvelope)


def msgspec_struct_round_trip() -> list[StructEnvelope]:
    now = time.time()
    payloads = [
        _struct_encoder.encode(StructEnvelope(1, f"abcd1234-{i + 1}", "agent-7", i + 1, now, item))
        for i, item in enumerate(ITEMS)
    ]
    return [_struct_decoder.decode(p) for p in payloads]


def _check(result: list[Any]) -> None:
    assert len(result) == N
    last = result[-1]
    data = last.data if not isinstance(last, dict) else last["data"]
    assert data == ITEMS[-1]


@pytest.mark.benchmark(group="envelope round trip, 1000 messages, json")
def test_lockstep_json(benchmark: Any) -> None:
    _check(benchmark(lockstep_round_trip, EnvelopeCodec("agent-7")))


@pytest.mark.benchmark(group="envelope round trip, 1000 messages, json")
def test_baseline_json_stdlib(benchmark: Any) -> None:
    _check(benchmark(json_stdlib_round_trip))


@pytest.mark.benchmark(group="envelope round trip, 1000 messages, json")
def test_baseline_msgspec_struct(benchmark: Any) -> None:
    _check(benchmark(msgspec_struct_round_trip))


@pytest.mark.benchmark(group="envelope round trip, 1000 messages, msgpack")
def test_lockstep_msgpack(benchmark: Any) -> None:
    _check(benchmark(lockstep_round_trip, EnvelopeCodec("agent-7", "msgpack")))


def _median_seconds(fn: Callable[[], object], rounds: int = 30) -> float:
    fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def test_ratio_report(capsys: pytest.CaptureFixture[str]) -> None:
    """Medians side by side, with the ratio to the stdlib-json baseline."""
    json_codec, mp_codec = EnvelopeCodec("agent-7"), EnvelopeCodec("agent-7", "msgpack")
    rows = {
        "json-stdlib (baseline)": _median_seconds(json_stdlib_round_trip),
        "msgspec Struct (no Rust core)": _median_seconds(msgspec_struct_round_trip),
        "lockstep json": _median_seconds(lambda: lockstep_round_trip(json_codec)),
        "lockstep msgpack": _median_seconds(lambda: lockstep_round_trip(mp_codec)),
    }
    base = rows["json-stdlib (baseline)"]
    with capsys.disabled():
        print(f"\nenvelope encode+decode of {N} messages (median of 30)")
        for name, seconds in rows.items():
            print(
                f"  {name:30} {seconds * 1e3:8.3f} ms  {N / seconds / 1e3:8.1f} K msg/s  x{base / seconds:5.2f} vs baseline"
            )
