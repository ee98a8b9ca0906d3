"""The file driver's lease records (``lockstep.drivers.sqlite_lease_records``): real files,
real ``flock``, a real SQLite file for the epochs.

* fences keep growing across a "reboot" (a new boot id): a record written in another boot
  starts over at the new boot's epoch, above every fence of the earlier one, and its
  holders (dead with that boot) are gone;
* the epoch of a boot is durable and made once per boot; the first boot's is 0;
* a torn or foreign record never lowers a fence below the boot's base, and a shorter
  record written over a longer one reads right;
* the hot path steps aside (None) while another process's descriptor holds the record's
  critical section, and when the file was unlinked under it;
* a liveness file proves a session dead only when it can: killed holder yes, live holder
  no, a file replaced under a live holder no.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from lockstep._core import LeaseRecordFile, LeaseTable
from lockstep.drivers.sqlite_lease_records import (
    EPOCH_SHIFT,
    HolderFile,
    RecordFiles,
    boot_epoch,
    current_boot_id,
    session_dead,
)

RID = "ls:ns:{lock:build}"


def grant(records: RecordFiles, token: str, ttl: float = 30.0) -> tuple[int, bool] | None:
    return LeaseRecordFile(records.path(RID), RID, records.boot, records.base_fence).try_grant(
        token, "alice", "s:0:1", 1, ttl, 0
    )


def test_fences_keep_growing_across_a_reboot(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "coord.db", isolation_level=None)
    first = RecordFiles(tmp_path, "boot-1")
    first.base_fence = boot_epoch(db, "boot-1", "normal") << EPOCH_SHIFT
    assert first.base_fence == 0  # the first boot: fences 1, 2, 3, ... as on every driver
    assert grant(first, "s.a") == (1, False)
    assert grant(first, "s.b") is None  # held by s.a
    assert LeaseRecordFile(first.path(RID), RID, "boot-1", 0).release("s.a") == (True, [])
    assert grant(first, "s.b") == (2, False)  # s.b still holds it when the host "reboots"

    after = RecordFiles(tmp_path, "boot-2")
    after.base_fence = boot_epoch(db, "boot-2", "normal") << EPOCH_SHIFT
    fence, _ = grant(after, "s.c") or (0, False)
    assert fence == (1 << EPOCH_SHIFT) + 1 > 2  # s.b died with boot-1: its hold is gone
    assert boot_epoch(db, "boot-1", "normal") == 0  # each boot keeps its epoch


def test_the_epoch_of_a_boot_is_durable(tmp_path: Path) -> None:
    path = tmp_path / "coord.db"
    with sqlite3.connect(path, isolation_level=None) as db:
        assert [boot_epoch(db, b, "normal") for b in ("a", "b", "a", "c")] == [0, 1, 0, 2]
    with sqlite3.connect(path, isolation_level=None) as db:  # another process, later
        assert boot_epoch(db, "d", "full") == 3
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL, as asked, restored after


def test_torn_or_foreign_records_start_over_at_the_base(tmp_path: Path) -> None:
    records = RecordFiles(tmp_path, "boot")
    records.base_fence = 5 << EPOCH_SHIFT
    Path(records.path(RID)).write_bytes(b"\x00\x00\x01\x00LSR1 torn")
    assert grant(records, "s.a") == ((5 << EPOCH_SHIFT) + 1, False)
    assert grant(records, "s.b") is None
    # The holder's record, then a shorter one over it: the length prefix reads the shorter right.
    long = Path(records.path(RID)).stat().st_size
    assert LeaseRecordFile(records.path(RID), RID, "boot", 0).release("s.a") == (True, [])
    raw = Path(records.path(RID)).read_bytes()
    table = LeaseTable()
    assert table.load_record(RID, raw, "boot", 0) and len(raw) == long
    assert table.dump(RID) == (1, (5 << EPOCH_SHIFT) + 1, [], [])


def test_the_hot_path_steps_aside_when_the_critical_section_is_busy(tmp_path: Path) -> None:
    records = RecordFiles(tmp_path, "boot")
    hot = LeaseRecordFile(records.path(RID), RID, "boot", 0)
    other = os.open(records.path(RID), os.O_RDWR)  # another open file description: another process
    try:
        fcntl.flock(other, fcntl.LOCK_EX)
        assert hot.try_grant("s.a", "alice", "s:0:1", 1, 30.0, 0) is None
        assert hot.release("s.a") is None
        assert records.locked([RID], lambda table, now: True) is None
        fcntl.flock(other, fcntl.LOCK_UN)
        assert hot.try_grant("s.a", "alice", "s:0:1", 1, 30.0, 0) == (1, False)
    finally:
        os.close(other)
    os.unlink(records.path(RID))  # removed under it: never write to an inode nobody else locks
    assert hot.renew("s.a", 30.0) is None
    assert records.locked([RID], lambda table, now: True) is None


def test_a_liveness_file_proves_death_only_when_it_can(tmp_path: Path) -> None:
    program = (
        "import sys; from pathlib import Path; from lockstep.drivers.sqlite_lease_records import HolderFile;"
        "h = HolderFile(Path(sys.argv[1]), 'child'); print(h.holder_session, flush=True); sys.stdin.read()"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", program, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        session = child.stdout.readline().strip()
        assert session.startswith("child:0:")
        assert not session_dead(tmp_path, session)  # alive
        mine = HolderFile(tmp_path, "me")  # holder-0 is the child's: this one takes holder-1
        assert mine.holder_session.startswith("me:1:") and not session_dead(tmp_path, mine.holder_session)
    finally:
        child.kill()
        child.wait()
    assert session_dead(tmp_path, session)  # kill -9: its flock went with it
    # Replaced under a live holder: the new file (another inode) proves nothing about it.
    (tmp_path / "holder-1.lock").unlink()
    (tmp_path / "holder-1.lock").write_bytes(b"")
    assert not session_dead(tmp_path, mine.holder_session)
    assert not session_dead(tmp_path, "not-a-session")
    mine.close()


def test_records_of_this_boot_are_found_by_the_scan(tmp_path: Path) -> None:
    records = RecordFiles(tmp_path, current_boot_id())
    other = "ls:other:{lock:build}"
    LeaseRecordFile(records.path(RID), RID, records.boot, 0).try_grant("s.a", "alice", "s:0:1", 1, 30.0, 0)
    LeaseRecordFile(records.path(other), other, records.boot, 0).try_grant("s.b", "bob", "s:0:1", 1, 30.0, 0)
    found = records.scan("ls:ns:{", give_up=float("inf"))
    assert [(rid, [h[1] for h in state[2]]) for rid, state in found] == [(RID, ["alice"])]
