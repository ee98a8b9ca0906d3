"""ACKs: who acked and who is missing; HMAC-signed ACKs accepted, forged and replayed ones
rejected with SignatureError (never a crash); on every driver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import lockstep
import msgspec
import pytest
from lockstep.acks import ack_key
from lockstep.errors import InvalidInputError, SignatureError

SECRET = b"0123456789abcdef0123456789abcdef"
SLACK = 0.15


@pytest.fixture
async def peer(url: str, namespace: str) -> AsyncIterator[lockstep.Coordinator]:
    async with lockstep.connect(url, namespace=namespace, member="peer", timeout=5.0) as c:
        yield c


async def test_wait_acks_returns_as_soon_as_every_party_acked(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    sig = await coord.signal("sprint-1", "deploy", {"build": 42})
    waiter = asyncio.create_task(coord.wait_acks(sig, ["sprint-2", "sprint-3"], timeout=10))
    got = await peer.wait_signal("sprint-1", "deploy", timeout=2)
    await peer.ack(got, by="sprint-2", data={"ok": True})
    await asyncio.sleep(0.1)
    assert not waiter.done()
    await peer.ack(got, by="sprint-3")
    result = await waiter
    assert result.complete and result.missing == [] and list(result.acked) == ["sprint-2", "sprint-3"]
    assert result.acked["sprint-2"].data == {"ok": True} and result.acked["sprint-2"].generation == 1
    assert result.waited < 2.0


async def test_a_timeout_returns_who_acked_and_who_is_missing(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    sig = await coord.signal("s", "partial")
    await peer.ack(sig, by="a")
    started = time.monotonic()
    result = await coord.wait_acks(sig, ["a", "b", "c"], timeout=0.4)
    assert 0.4 <= time.monotonic() - started < 0.4 + SLACK
    assert list(result.acked) == ["a"] and result.missing == ["b", "c"] and not result


async def test_acking_twice_is_harmless_and_acks_are_per_generation(coord: lockstep.Coordinator) -> None:
    first = await coord.signal("s", "gen")
    await coord.ack(first, by="a")
    await coord.ack(first, by="a")
    second = await coord.signal("s", "gen")
    result = await coord.wait_acks(second, ["a"], timeout=0.2)
    assert result.missing == ["a"]  # the ACK of generation 1 does not count for generation 2
    assert (await coord.wait_acks(first, ["a"], timeout=0.2)).complete


async def test_signed_acks_are_accepted(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    mine, theirs = coord.signals(secret=SECRET), peer.signals(secret=SECRET)
    sig = await mine.signal("s", "signed", {"payload": [1, 2, 3]})
    got = await theirs.wait_signal("s", "signed", timeout=2)
    ack = await theirs.ack(got, by="b")
    assert ack.signed
    result = await mine.wait_acks(sig, ["b"], timeout=2)
    assert result.complete and result.acked["b"].signed and result.rejected == {}


async def test_forged_unsigned_and_replayed_acks_are_rejected(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    mine = coord.signals(secret=SECRET)
    old = await mine.signal("s", "guarded", "v1")
    await peer.signals(secret=SECRET).ack(old, by="honest")  # valid for generation 1
    sig = await mine.signal("s", "guarded", "v2")
    await peer.signals(secret=b"another-secret-of-32-bytes......").ack(sig, by="forger")
    await peer.ack(sig, by="unsigned")
    # Replay: copy honest's valid generation-1 ACK under generation 2.
    stored = await coord.driver.get(ack_key(mine, old, "honest"), timeout=2)
    assert stored is not None
    await coord.driver.set(ack_key(mine, sig, "honest"), stored, timeout=2)
    # Tamper: a correctly signed ACK whose generation was edited to match.
    tampered = msgspec.json.decode(stored)
    tampered["gen"] = sig.generation
    await coord.driver.set(ack_key(mine, sig, "editor"), msgspec.json.encode({**tampered, "party": "editor"}), timeout=2)
    await coord.driver.set(ack_key(mine, sig, "garbage"), b"\xff not json", timeout=2)

    parties = ["forger", "unsigned", "honest", "editor", "garbage"]
    result = await mine.wait_acks(sig, parties, timeout=0.3)
    assert result.acked == {} and result.missing == parties
    assert set(result.rejected) == set(parties)
    assert all(isinstance(e, SignatureError) for e in result.rejected.values())
    assert "forged" in str(result.rejected["forger"]) and "HMAC" in str(result.rejected["forger"])
    assert "unsigned" in str(result.rejected["unsigned"])
    assert "replayed" in str(result.rejected["honest"]) and "generation 1" in str(result.rejected["honest"])
    assert "replayed" in str(result.rejected["editor"]) or "forged" in str(result.rejected["editor"])
    assert "malformed" in str(result.rejected["garbage"])


async def test_a_valid_ack_replaces_a_rejected_one_before_the_deadline(
    coord: lockstep.Coordinator, peer: lockstep.Coordinator
) -> None:
    mine = coord.signals(secret=SECRET)
    sig = await mine.signal("s", "retry")
    await peer.ack(sig, by="b")  # unsigned: rejected
    waiter = asyncio.create_task(mine.wait_acks(sig, ["b"], timeout=5))
    await asyncio.sleep(0.2)
    assert not waiter.done()
    await peer.signals(secret=SECRET).ack(sig, by="b")
    result = await waiter
    assert result.complete and result.rejected == {}


async def test_fifty_parties(coord: lockstep.Coordinator, peer: lockstep.Coordinator) -> None:
    sig = await coord.signal("s", "many")
    parties = [f"p{i}" for i in range(50)]
    waiter = asyncio.create_task(coord.wait_acks(sig, parties, timeout=10))
    await asyncio.gather(*(peer.ack(sig, by=p) for p in parties))
    result = await waiter
    assert result.complete and len(result.acked) == 50


async def test_ack_bad_input(coord: lockstep.Coordinator) -> None:
    sig = await coord.signal("s", "x")
    with pytest.raises(InvalidInputError, match="Signal"):
        await coord.ack("not a signal", by="a")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="parties"):
        await coord.wait_acks(sig, "abc", timeout=1)
    with pytest.raises(InvalidInputError, match="party"):
        await coord.ack(sig, by="bad party")
    assert (await coord.wait_acks(sig, [], timeout=1)).complete
