"""Port leases and file claims, one suite for every driver.

Ports: unique among coordinators, bindable on this host (a port in use is skipped),
all or nothing, waited for only when the range is exhausted, typed errors for bad
counts and ranges. Claims: all or nothing, conflicts name each path's holder, two
spellings of one path conflict, a path outside the root is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import lockstep
import pytest
from lockstep.errors import ClaimConflict, InvalidInputError, LeaseLost, LockTimeout
from lockstep.ports import DEFAULT_PORT_RANGE, probe_port

from tests.conftest import ConnectAs


@pytest.fixture
async def alice(connect_as: ConnectAs) -> lockstep.Coordinator:
    return await connect_as("alice")


@pytest.fixture
async def bob(connect_as: ConnectAs) -> lockstep.Coordinator:
    return await connect_as("bob")


@pytest.fixture
async def carol(connect_as: ConnectAs) -> lockstep.Coordinator:
    return await connect_as("carol")


def bind_all(ports: list[int]) -> list[socket.socket]:
    """Listen on every port (as a test server would); raises OSError (EADDRINUSE) if taken."""
    socks = []
    for port in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        socks.append(s)
        s.bind(("127.0.0.1", port))
        s.listen()
    return socks


@contextlib.contextmanager
def free_run(length: int) -> Iterator[int]:
    """The first port of ``length`` consecutive ports free on this host (probed, then let go)."""
    lo, hi = DEFAULT_PORT_RANGE
    for start in range(lo + (os.getpid() * 7) % 5000, hi - length, length):
        probes = [probe_port(p) for p in range(start, start + length)]
        for probe in probes:
            if probe is not None:
                probe.close()
        if all(probes):
            yield start
            return
    raise AssertionError(f"no {length} consecutive free ports in {lo}-{hi}")


# -- ports ----------------------------------------------------------------------------
async def test_ports_are_unique_across_coordinators_and_bindable(alice, bob) -> None:
    async with alice.ports(3) as mine, bob.ports(3) as theirs:
        assert len(set(mine.ports)) == 3 and not set(mine.ports) & set(theirs.ports)
        lo, hi = DEFAULT_PORT_RANGE
        assert all(lo <= p <= hi for p in mine.ports + theirs.ports)
        socks = bind_all(mine.ports + theirs.ports)  # no EADDRINUSE: the probes were released
        for s in socks:
            s.close()
        assert mine.holder == "alice" and mine.fence >= 1 and not mine.lost.is_set()
        for port in mine.ports:
            holders = await bob.lease_holders(str(port), kind="port")
            assert [h.owner for h in holders] == ["alice"]
    assert mine.released and await bob.lease_holders(str(mine.ports[0]), kind="port") == []


async def test_a_port_in_use_on_the_host_is_skipped(alice) -> None:
    with free_run(3) as start:
        busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        busy.bind(("127.0.0.1", start + 1))
        try:
            async with alice.ports(2, range=(start, start + 2), wait=0) as lease:
                assert lease.ports == [start, start + 2]
            with pytest.raises(LockTimeout) as info:
                await alice.ports(1, range=(start + 1, start + 1), wait=0)
            assert f"{start + 1}-{start + 1}" in str(info.value)
        finally:
            busy.close()
        async with alice.ports(1, range=(start + 1, start + 1), wait=0) as lease:
            assert lease.ports == [start + 1]


async def test_an_exhausted_range_waits_for_a_release_then_times_out(alice, bob) -> None:
    with free_run(2) as start:
        window = (start, start + 1)
        held = await alice.ports(2, range=window)
        with pytest.raises(LockTimeout) as info:
            await bob.ports(1, range=window, wait=0)
        assert info.value.holders == ("alice",)
        started = time.monotonic()
        with pytest.raises(LockTimeout):
            await bob.ports(1, range=window, wait=0.3)
        assert 0.3 <= time.monotonic() - started < 1.5
        waiting = asyncio.create_task(bob.ports(2, range=window, wait=5)._acquire())
        await asyncio.sleep(0.1)
        assert not waiting.done()
        await held.release()
        got = await asyncio.wait_for(waiting, 3)
        assert got.ports == [start, start + 1] and got.holder == "bob"
        await got.release()


async def test_ports_are_all_or_nothing(alice, bob) -> None:
    with free_run(3) as start:
        async with alice.ports(1, range=(start + 1, start + 1)):
            # bob can have 2 of the 3 only: he never holds the third meanwhile
            async with bob.ports(2, range=(start, start + 2), wait=0) as lease:
                assert lease.ports == [start, start + 2]
            with pytest.raises(LockTimeout):
                await bob.ports(3, range=(start, start + 2), wait=0)
            for port in (start, start + 2):
                assert await alice.lease_holders(str(port), kind="port") == []


async def test_port_lease_extend_and_lost(alice) -> None:
    lease = await alice.ports(1, ttl=5)
    await lease.extend(10)
    assert lease.ttl == 10
    await lease.release()
    with pytest.raises(LeaseLost):
        lease.check()


async def test_bad_port_requests_raise_typed_errors(alice) -> None:
    for count in (0, -1, 1.5, True, "2", 10_000):
        with pytest.raises(InvalidInputError, match="port count"):
            alice.ports(count)
    with pytest.raises(InvalidInputError, match="only 2"):
        alice.ports(3, range=(25000, 25001))
    for bad in ((30000, 29999), (80, 90), (60000, 70000), (1, 2, 3), "20000-29999", (20000.0, 20010)):
        with pytest.raises(InvalidInputError, match="port range"):
            alice.ports(1, range=bad)
    with pytest.raises(InvalidInputError, match="ttl"):
        alice.ports(1, ttl=0)
    with pytest.raises(InvalidInputError, match="wait"):
        alice.ports(1, wait=-1)


# -- claims ---------------------------------------------------------------------------
async def test_claims_are_all_or_nothing_and_name_each_holder(alice, bob, carol, tmp_path: Path) -> None:
    async with alice.claim(["src/auth.py", "src/api.py"], root=tmp_path, holder="sprint-1") as mine:
        assert mine.paths == ["src/auth.py", "src/api.py"] and mine.holder == "sprint-1"
        with pytest.raises(ClaimConflict) as info:
            await bob.claim(["src/api.py", "src/db.py", "./src/auth.py"], root=tmp_path, holder="sprint-2")
        assert info.value.conflicts == {"src/api.py": "sprint-1", "src/auth.py": "sprint-1"}
        # nothing was taken: src/db.py is free for a third
        async with carol.claim(["src/db.py"], root=tmp_path) as third:
            assert third.holder == "carol"
    async with bob.claim(["src/api.py", "src/db.py"], root=tmp_path) as theirs:
        assert theirs.holder == "bob"


async def test_two_spellings_of_one_path_conflict(alice, bob, tmp_path: Path) -> None:
    async with alice.claim(["./a.py", "pkg//b.py", "pkg/x/../c.py", str(tmp_path / "d.py")], root=tmp_path) as mine:
        assert mine.paths == ["a.py", "pkg/b.py", "pkg/c.py", "d.py"]
        for spelling in ("a.py", "./pkg/b.py", "pkg/./c.py", str(tmp_path / "pkg" / ".." / "d.py")):
            with pytest.raises(ClaimConflict) as info:
                await bob.claim([spelling], root=tmp_path)
            assert list(info.value.conflicts.values()) == ["alice"]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # the default root is the current directory
        async with alice.claim(["e.py"]):
            with pytest.raises(ClaimConflict):
                await bob.claim([tmp_path / "e.py"], root=tmp_path)
    finally:
        os.chdir(cwd)


async def test_paths_that_are_not_names_still_conflict(alice, bob, tmp_path: Path) -> None:
    odd = ["my notes.md", "café.py", "x" * 250 + ".py"]
    async with alice.claim(odd, root=tmp_path, holder="sprint-9"):
        for path in odd:
            with pytest.raises(ClaimConflict) as info:
                await bob.claim(["free.py", "./" + path], root=tmp_path)
            assert info.value.conflicts == {path: "sprint-9"}


async def test_a_waiting_claim_gets_the_paths_when_released(alice, bob, tmp_path: Path) -> None:
    held = await alice.claim(["a.py"], root=tmp_path)
    waiting = asyncio.create_task(bob.claim(["a.py", "b.py"], root=tmp_path, wait=5)._acquire())
    await asyncio.sleep(0.1)
    assert not waiting.done()
    await held.release()
    claim = await asyncio.wait_for(waiting, 3)
    assert claim.paths == ["a.py", "b.py"] and claim.fences["a.py"] > held.fence
    await claim.release()
    with pytest.raises(ClaimConflict) as info:  # a timed-out wait names the holder too
        async with alice.claim(["z.py"], root=tmp_path):
            await bob.claim(["z.py"], root=tmp_path, wait=0.2)
    assert info.value.conflicts == {"z.py": "alice"} and info.value.waited == 0.2


async def test_bad_claims_raise_typed_errors(alice, tmp_path: Path) -> None:
    for outside in ("../x.py", "/etc/passwd", "a/../../x.py"):
        with pytest.raises(InvalidInputError, match="outside the claim root"):
            alice.claim([outside], root=tmp_path)
    with pytest.raises(InvalidInputError, match="root itself"):
        alice.claim(["."], root=tmp_path)
    with pytest.raises(InvalidInputError, match="at least one"):
        alice.claim([], root=tmp_path)
    with pytest.raises(InvalidInputError, match="list of paths"):
        alice.claim("a.py", root=tmp_path)
    with pytest.raises(InvalidInputError, match="empty"):
        alice.claim([""], root=tmp_path)
    with pytest.raises(InvalidInputError, match="str or os.PathLike"):
        alice.claim([3], root=tmp_path)
    with pytest.raises(InvalidInputError, match="holder"):
        alice.claim(["a.py"], root=tmp_path, holder="not a name")
    assert alice.claim(["a.py", "./a.py"], root=tmp_path).paths == ["a.py"]
