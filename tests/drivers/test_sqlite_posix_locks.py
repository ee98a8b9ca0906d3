"""The file driver must never drop SQLite's POSIX locks.

``close()`` of any descriptor of a file releases every POSIX lock the process holds on
it. Two places did that to files SQLite had open in the same process:

* the doorbell opened the ``-shm``, mapped it and closed the descriptor: that released
  SQLite's shared "dead man switch" lock (byte 128 of the -shm), so another process that
  opened the database next took itself for the first user and truncated the -shm, and a
  process reading its mapping died of SIGBUS (scenario 9's intermittent "lost" message);
* ``connect`` opened and closed the database file to check it: a second coordinator on
  the same file released the first one's shared lock on the WAL database, the lock that
  stops another process's last close from deleting the -wal and -shm still in use.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import lockstep
from lockstep.messaging import Message

DMS_BYTE = 128  # SQLite's unix VFS: (22 + 8) * 4 + 8, the -shm's dead-man-switch lock

SHARED_FIRST, SHARED_SIZE = 0x40000002, 510  # the database file's SHARED lock range

TRY_EXCLUSIVE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, int(sys.argv[3]), int(sys.argv[2]))
except OSError:
    print("held")
else:
    print("free")
"""


def lock_state(path: Path, start: int, length: int = 1) -> str:
    """From another process: does anybody hold a lock on these bytes of ``path``?"""
    out = subprocess.run(
        [sys.executable, "-c", TRY_EXCLUSIVE, str(path), str(start), str(length)],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def dms_lock_state(shm: Path) -> str:
    return lock_state(shm, DMS_BYTE)


async def test_a_waiting_subscriber_keeps_sqlite_s_shm_lock(tmp_path: Path) -> None:
    db = tmp_path / "coord.db"
    async with lockstep.connect(f"file://{db}", namespace="bell") as coord:
        await coord.publish("ch", 1)
        shm = Path(f"{db}-shm")
        assert dms_lock_state(shm) == "held", "SQLite holds the DMS lock while connected"
        async with coord.subscribe("ch") as sub:
            await coord.publish("ch", 2)
            got = await sub.get_batch(10, timeout=5)  # the doorbell rang: it read the -shm
            assert [m.data for m in got if isinstance(m, Message)] == [2] and len(got) == 1
            assert dms_lock_state(shm) == "held", "the doorbell released SQLite's lock on the -shm"
        assert dms_lock_state(shm) == "held", "closing a subscription releases nothing either"


async def test_a_second_coordinator_keeps_the_first_one_s_database_lock(tmp_path: Path) -> None:
    db = tmp_path / "coord.db"
    url = f"file://{db}"
    async with lockstep.connect(url, namespace="a") as first:
        await first.publish("ch", 1)
        assert lock_state(db, SHARED_FIRST, SHARED_SIZE) == "held", "a WAL connection holds SHARED"
        async with lockstep.connect(url, namespace="b") as second:
            await second.publish("ch", 2)
            assert lock_state(db, SHARED_FIRST, SHARED_SIZE) == "held"
        assert lock_state(db, SHARED_FIRST, SHARED_SIZE) == "held", "the second one's connect released it"
