"""``lockstep.cfn.TestLockCoordinator`` and ``FileConflictDetector`` on every driver."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import lockstep
import pytest
from lockstep.cfn import FileConflict, FileConflictDetector, TestLockCoordinator
from lockstep.errors import InvalidInputError

from tests.conftest import ConnectAs


@pytest.fixture
async def one(connect_as: ConnectAs) -> lockstep.Coordinator:
    return await connect_as("proc-1")


@pytest.fixture
async def two(connect_as: ConnectAs) -> lockstep.Coordinator:
    return await connect_as("proc-2")


async def test_test_lock_serializes_sprints_and_names_the_holder(one, two) -> None:
    first, second = TestLockCoordinator(one, ttl=5), TestLockCoordinator(two, ttl=5)
    assert await first.holder() is None
    assert await first.wait_for_test_slot("sprint-1", 1) is True
    assert await first.wait_for_test_slot("sprint-1", 1) is True  # already held: at once
    assert await second.holder() == "sprint-1"
    started = time.monotonic()
    assert await second.wait_for_test_slot("sprint-2", 0.2) is False
    assert 0.2 <= time.monotonic() - started < 1.0
    assert await second.release_test_lock("sprint-2") is False  # never held it
    waiting = asyncio.create_task(second.wait_for_test_slot("sprint-2", 5))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    assert await first.release_test_lock("sprint-1") is True
    assert await first.release_test_lock("sprint-1") is False
    assert await asyncio.wait_for(waiting, 3) is True
    assert await first.holder() == "sprint-2"
    assert await second.release_test_lock("sprint-2") is True
    assert await second.holder() is None


async def test_ten_sprints_never_overlap(one, two) -> None:
    locks = [TestLockCoordinator(one if i % 2 else two, name="suite", ttl=5) for i in range(10)]
    windows: list[tuple[float, float]] = []

    async def sprint(i: int) -> None:
        assert await locks[i].wait_for_test_slot(f"sprint-{i}", 20)
        try:
            start = time.monotonic()
            await asyncio.sleep(0.01)
            windows.append((start, time.monotonic()))
        finally:
            assert await locks[i].release_test_lock(f"sprint-{i}")

    await asyncio.gather(*(sprint(i) for i in range(10)))
    windows.sort()
    assert len(windows) == 10
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(windows))


async def test_test_lock_rejects_bad_arguments(one) -> None:
    with pytest.raises(InvalidInputError, match="ttl"):
        TestLockCoordinator(one, ttl=0)
    lock = TestLockCoordinator(one)
    with pytest.raises(InvalidInputError, match="timeout"):
        await lock.wait_for_test_slot("sprint-1", -1)
    with pytest.raises(InvalidInputError, match="sprint"):
        await lock.wait_for_test_slot("bad id", 1)


async def test_file_claims_name_the_holding_sprint(one, two, tmp_path: Path) -> None:
    s1 = FileConflictDetector(one, "sprint-1", root=str(tmp_path))
    s2 = FileConflictDetector(two, "sprint-2", root=str(tmp_path))
    first = await s1.claim(["src/auth.py", "src/api.py"])
    assert first.ok and first.granted == ["src/auth.py", "src/api.py"] and first.conflicts == {}
    refused = await s2.claim(["./src/api.py", "src/db.py"])
    assert not refused.ok and refused.granted == [] and refused.conflicts == {"src/api.py": "sprint-1"}
    assert await s2.detect_file_conflicts() == [FileConflict("src/api.py", "sprint-1", "sprint-2")]
    assert (await s2.claim(["src/db.py"])).granted == ["src/db.py"]  # nothing was taken before
    assert await s1.detect_file_conflicts() == []

    # Releasing part of a claim keeps the whole claim until its last path goes.
    assert await s1.release(["src/auth.py"]) == []
    assert s1.held() == ["src/api.py"]
    assert (await s2.claim(["src/auth.py"])).conflicts == {"src/auth.py": "sprint-1"}
    assert sorted(await s1.release(["src/api.py"])) == ["src/api.py", "src/auth.py"]
    assert s1.held() == []
    assert await s2.detect_file_conflicts() == []  # the holder let go
    assert (await s2.claim(["src/api.py", "src/auth.py"])).ok
    assert sorted(await s2.release()) == ["src/api.py", "src/auth.py", "src/db.py"]


async def test_concurrent_overlapping_claims_detect_every_conflict(one, two, tmp_path: Path) -> None:
    files = [f"f{i}.py" for i in range(6)]
    detectors = [FileConflictDetector(one if i % 2 else two, f"sprint-{i}", root=str(tmp_path)) for i in range(8)]
    wants = [[files[i % 6], files[(i + 1) % 6]] for i in range(8)]
    results = await asyncio.gather(*(d.claim(w) for d, w in zip(detectors, wants)))
    owner: dict[str, str] = {}
    for i, result in enumerate(results):
        for path in result.granted:
            assert path not in owner, f"{path} granted twice"
            owner[path] = f"sprint-{i}"
    for i, result in enumerate(results):
        if not result.ok:
            assert result.conflicts and all(owner[p] == who for p, who in result.conflicts.items())
        else:
            assert set(result.granted) == set(wants[i])
    for d in detectors:
        await d.release()
