"""Signed signals: with a secret, a signal carries an HMAC-SHA256 over namespace, target,
name, sender, send time and payload; a reader with the secret accepts only valid ones and
rejects unsigned, forged or altered ones with SignatureError (typed, never a crash); a
reader without a secret still reads them. On every driver."""

from __future__ import annotations

import lockstep
import msgspec
import pytest
from lockstep.errors import SignatureError

SECRET = b"0123456789abcdef0123456789abcdef"
OTHER = b"fedcba9876543210fedcba9876543210"


async def test_signed_signal_round_trip(coord: lockstep.Coordinator) -> None:
    signed = coord.signals(secret=SECRET)
    sent = await signed.signal("sprint-1", "interface_ready", {"file": "auth-api.ts"})
    assert sent.signed and sent.sent > 0
    got = await signed.wait_signal("sprint-1", "interface_ready", timeout=2)
    assert got.signed and got.data == {"file": "auth-api.ts"} and got.sent == sent.sent
    assert got.generation == sent.generation == 1
    plain = await coord.wait_signal("sprint-1", "interface_ready", timeout=2)  # no secret: readable, not verified
    assert plain.data == {"file": "auth-api.ts"} and not plain.signed


async def test_unsigned_or_wrongly_signed_signals_are_rejected(coord: lockstep.Coordinator) -> None:
    await coord.signal("sprint-1", "plain", {"n": 1})
    with pytest.raises(SignatureError, match="unsigned signal 'plain'"):
        await coord.signals(secret=SECRET).wait_signal("sprint-1", "plain", timeout=1)
    await coord.signals(secret=OTHER).signal("sprint-1", "other", {"n": 2})
    with pytest.raises(SignatureError, match="forged signal 'other'"):
        await coord.signals(secret=SECRET).latest("sprint-1", "other")


async def test_an_altered_payload_or_sender_is_rejected(coord: lockstep.Coordinator) -> None:
    signed = coord.signals(secret=SECRET)
    await signed.signal("sprint-1", "deploy", {"build": 42})
    key = signed.log_key("sprint-1", "deploy")
    stored = (await signed.store.read(key, None, timeout=2)).entry
    assert stored is not None
    record = msgspec.json.decode(stored.record)
    for change in ({"data": {"build": 43}}, {"sender": "mallory"}, {"sent": record["sent"] + 1}):
        await signed.store.append(key, msgspec.json.encode({**record, **change}), keep=100, timeout=2)
        with pytest.raises(SignatureError, match="forged signal 'deploy'"):
            await signed.latest("sprint-1", "deploy")
    # the untouched original still verifies
    first = await signed.latest("sprint-1", "deploy", after_generation=0)
    assert first is not None and first.data == {"build": 42} and first.signed
