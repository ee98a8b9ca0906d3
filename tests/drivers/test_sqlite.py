"""The SQLite file driver on real database files under tmp_path.

The Redis rules it shares with the memory driver are tested in test_memory.py
(parametrized over both); this file covers what only the file driver does:
permissions, WAL, paths, network filesystems, locking across connections and
processes, deadlines, and SQLite failures mapped to lockstep errors.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import lockstep
from lockstep.drivers import fsinfo
from lockstep.drivers.sqlite import SqliteDriver

T = 2.0
SLOW_QUERY = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"

CHILD = """
import asyncio, sys, lockstep
async def main(url, n):
    async with lockstep.connect(url, timeout=20) as c:
        for _ in range(n):
            await c.driver.incr("count", timeout=20)
        seen = await c.driver.get("from-parent", timeout=20)
        print(seen.decode() if seen else "-")
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "coord.db"


@pytest.fixture
async def driver(db: Path) -> AsyncIterator[SqliteDriver]:
    async with lockstep.connect(f"file://{db}") as coord:
        assert isinstance(coord.driver, SqliteDriver)
        yield coord.driver


@pytest.fixture
def raw(db: Path, driver: SqliteDriver) -> Iterator[sqlite3.Connection]:
    """A second, plain sqlite3 connection to the driver's file."""
    conn = sqlite3.connect(db, isolation_level=None)
    yield conn
    conn.close()


# -- the file on disk ----------------------------------------------------------------------
async def test_file_wal_and_shm_are_private_even_with_an_open_umask(tmp_path: Path) -> None:
    db = tmp_path / "new" / "deeper" / "coord.db"
    before = mode(tmp_path)
    old = os.umask(0)
    try:
        async with lockstep.connect(f"file://{db}") as coord:
            await coord.driver.set("k", b"v", timeout=T)
            files = {p.name: mode(p) for p in db.parent.iterdir()}
    finally:
        os.umask(old)
    assert files == {"coord.db": 0o600, "coord.db-wal": 0o600, "coord.db-shm": 0o600}
    assert mode(db.parent) == 0o700 and mode(db.parent.parent) == 0o700
    assert mode(tmp_path) == before  # a folder we did not create is left alone


async def test_wal_mode_is_on(driver: SqliteDriver, raw: sqlite3.Connection) -> None:
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    info = await driver.server_info(timeout=T)
    assert info.details["journal_mode"] == "wal"


async def test_server_info_and_capabilities(driver: SqliteDriver, db: Path) -> None:
    info = await driver.server_info(timeout=T)
    assert (info.driver, info.version, info.durable) == ("file", sqlite3.sqlite_version, True)
    assert info.persistence == "sqlite wal (synchronous=normal)"
    assert info.details["path"] == str(db) and info.details["size_bytes"] > 0
    assert info.warnings == []
    C = lockstep.Capability
    assert driver.capabilities == frozenset(
        {C.KV, C.CROSS_PROCESS, C.PERSISTENT, C.LOCKS, C.PUBSUB, C.DURABLE_MESSAGES, C.RATE_LIMIT}
    )


async def test_synchronous_full_is_applied(db: Path) -> None:
    async with lockstep.connect(f"file://{db}?synchronous=full") as coord:
        d = coord.driver
        assert isinstance(d, SqliteDriver)
        level = await d._run(
            "check", lambda c, now: c.execute("PRAGMA synchronous").fetchone()[0], timeout=T, write=False
        )
        assert level == 2  # FULL
        assert (await coord.server_info()).persistence == "sqlite wal (synchronous=full)"


# -- paths -----------------------------------------------------------------------------------
async def test_relative_path_resolves_against_the_config_files_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "lockstep.toml").write_text('url = "file://./state/coord.db"\n')
    monkeypatch.delenv("LOCKSTEP_URL", raising=False)
    monkeypatch.chdir(project / "src")
    async with lockstep.connect() as coord:
        await coord.driver.set("k", b"v", timeout=T)
    assert (project / "state" / "coord.db").is_file()
    assert not (project / "src" / "state").exists()


async def test_relative_path_in_an_argument_resolves_against_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    async with lockstep.connect("file://./.lockstep/coord.db"):
        pass
    assert (tmp_path / ".lockstep" / "coord.db").is_file()


@pytest.mark.parametrize("url", ["file://", "file://?busy_timeout=1", "file:///tmp/folder/"])
def test_a_url_without_a_file_name_is_a_config_error(url: str) -> None:
    with pytest.raises(lockstep.ConfigError, match="file"):
        lockstep.connect(url)


async def test_an_existing_folder_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(lockstep.ConfigError, match="is a folder"):
        await lockstep.connect(f"file://{tmp_path}")


# -- refusing what is not ours --------------------------------------------------------------------
async def test_a_file_that_is_not_a_database_is_refused(db: Path) -> None:
    db.write_text("these are my notes, not a database\n" * 200)
    with pytest.raises(lockstep.ConfigError, match="not an SQLite database"):
        await lockstep.connect(f"file://{db}")
    assert db.read_text().startswith("these are my notes")


async def test_another_programs_database_is_refused(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(lockstep.ConfigError, match="another program"):
        await lockstep.connect(f"file://{db}")


async def test_a_newer_schema_is_refused(db: Path) -> None:
    async with lockstep.connect(f"file://{db}"):
        pass
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(lockstep.ConfigError, match="newer lockstep"):
        await lockstep.connect(f"file://{db}")


# -- network filesystems --------------------------------------------------------------------------
@pytest.fixture
def nfs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder the (sample) mount table says is an NFS mount."""
    folder = tmp_path / "nfs"
    sample = tmp_path / "mountinfo"
    real = Path("/proc/self/mountinfo").read_text() if Path("/proc/self/mountinfo").exists() else ""
    sample.write_text(real + f"999 1 0:99 / {folder} rw,relatime - nfs4 fileserver:/export rw,vers=4.2\n")
    monkeypatch.setattr(fsinfo, "MOUNTINFO_PATH", str(sample))
    return folder


async def test_a_network_filesystem_is_refused(nfs_folder: Path) -> None:
    with pytest.raises(lockstep.ConfigError) as info:
        await lockstep.connect(f"file://{nfs_folder}/coord.db")
    message = str(info.value)
    assert "network filesystem" in message and "nfs4" in message and "allow_network_fs=1" in message
    assert not nfs_folder.exists()  # refused before anything was created


async def test_allow_network_fs_accepts_it_with_a_warning(nfs_folder: Path) -> None:
    async with lockstep.connect(f"file://{nfs_folder}/coord.db?allow_network_fs=1") as coord:
        await coord.driver.set("k", b"v", timeout=T)
        info = await coord.server_info()
    assert any("network filesystem" in w for w in info.warnings)


# -- options -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("query", "option"),
    [
        ("busy_timeut=1", "busy_timeout"),
        ("synchronous=sometimes", "synchronous"),
        ("busy_timeout=-1", "busy_timeout"),
        ("allow_network_fs=perhaps", "allow_network_fs"),
    ],
)
def test_bad_options_are_named(db: Path, query: str, option: str) -> None:
    with pytest.raises(lockstep.BadOptionError) as info:
        lockstep.connect(f"file://{db}?{query}")
    named = query.partition("=")[0]
    assert info.value.option == named and named in str(info.value)
    assert option in str(info.value)  # the accepted (or closest) option is named too


# -- sharing --------------------------------------------------------------------------------------
async def test_two_coordinators_see_each_others_writes(db: Path) -> None:
    async with lockstep.connect(f"file://{db}") as a, lockstep.connect(f"file://{db}") as b:
        await a.driver.set("k", b"from a", timeout=T)
        assert await b.driver.get("k", timeout=T) == b"from a"
        await b.driver.hset("h", {"f": b"from b"}, timeout=T)
        assert await a.driver.hgetall("h", timeout=T) == {"f": b"from b"}


async def test_other_processes_share_the_file(db: Path) -> None:
    url = f"file://{db}"
    # two processes open a fresh file at once (racing to create the schema) and count together
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, url, "50", stdout=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(c.communicate() for c in children)), 60)
    assert [c.returncode for c in children] == [0, 0], outputs
    async with lockstep.connect(url) as coord:
        assert await coord.driver.get("count", timeout=T) == b"100"
        await coord.driver.set("from-parent", b"hello child", timeout=T)
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, url, "1", stdout=subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(child.communicate(), 60)
        assert out.decode().strip() == "hello child"
        assert await coord.driver.get("count", timeout=T) == b"101"


async def test_ttl_expiry_and_purge(driver: SqliteDriver, raw: sqlite3.Connection) -> None:
    await driver.set("short", b"v", ttl=0.2, timeout=T)
    await driver.hset("hash", {"f": b"v"}, timeout=T)
    await driver.expire("hash", 0.2, timeout=T)
    assert await driver.get("short", timeout=T) == b"v"
    await asyncio.sleep(0.3)
    assert await driver.get("short", timeout=T) is None
    assert await driver.hgetall("hash", timeout=T) == {}
    await driver.set("other", b"v", timeout=T)  # any write purges expired rows
    assert raw.execute("SELECT key FROM kv").fetchall() == [("other",)]
    assert raw.execute("SELECT count(*) FROM hash_field").fetchone()[0] == 0


async def test_state_survives_reopening(db: Path) -> None:
    async with lockstep.connect(f"file://{db}") as first:
        await first.driver.set("kept", b"yes", timeout=T)
    async with lockstep.connect(f"file://{db}") as later:
        assert await later.driver.get("kept", timeout=T) == b"yes"


# -- locks, deadlines, failures ------------------------------------------------------------------
async def test_a_write_waiting_on_another_writer_times_out_by_its_deadline(
    driver: SqliteDriver, raw: sqlite3.Connection
) -> None:
    await driver.set("k", b"before", timeout=T)
    raw.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    start = time.monotonic()
    with pytest.raises(lockstep.Timeout, match="locked"):
        await driver.set("k", b"blocked", timeout=0.4)
    assert time.monotonic() - start < 0.6
    assert await driver.get("k", timeout=T) == b"before"  # WAL: readers are not blocked
    raw.execute("ROLLBACK")
    assert await driver.set("k", b"after", timeout=T) is True


async def test_busy_timeout_option_bounds_the_wait(db: Path) -> None:
    async with lockstep.connect(f"file://{db}?busy_timeout=0.1") as coord:
        raw = sqlite3.connect(db, isolation_level=None)
        raw.execute("BEGIN IMMEDIATE")
        start = time.monotonic()
        with pytest.raises(lockstep.Timeout, match="busy timeout"):
            await coord.driver.incr("n", timeout=3)
        assert time.monotonic() - start < 1.0
        raw.execute("ROLLBACK")
        raw.close()


async def test_a_statement_past_its_deadline_is_interrupted(
    driver: SqliteDriver, raw: sqlite3.Connection
) -> None:
    def slow(conn: sqlite3.Connection, now: float) -> object:
        return conn.execute(SLOW_QUERY).fetchone()

    start = time.monotonic()
    with pytest.raises(lockstep.Timeout):
        await driver._run("slow read", slow, timeout=0.2, write=False)
    with pytest.raises(lockstep.OutcomeUnknown, match="may or may not"):
        await driver._run("slow write", slow, timeout=0.2, write=True)
    # the worker thread is free again and the write lock was released
    assert await driver.set("k", b"v", timeout=0.5) is True
    assert time.monotonic() - start < 1.5
    raw.execute("BEGIN IMMEDIATE")
    raw.execute("ROLLBACK")


async def test_a_full_database_is_a_backend_error_naming_the_file(driver: SqliteDriver, db: Path) -> None:
    def cap_size(conn: sqlite3.Connection, now: float) -> object:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        return conn.execute(f"PRAGMA max_page_count = {pages + 2}").fetchone()

    await driver._run("cap", cap_size, timeout=T, write=False)
    with pytest.raises(lockstep.BackendError, match="full") as info:
        await driver.set("big", b"x" * 200_000, timeout=T)
    assert str(db) in str(info.value)
    assert await driver.get("big", timeout=T) is None
    assert await driver.set("small", b"fits", timeout=T) is True


async def test_closed_driver_is_unavailable(db: Path) -> None:
    coord = await lockstep.connect(f"file://{db}")
    await coord.close()
    with pytest.raises(lockstep.BackendUnavailable, match="not connected"):
        await coord.driver.get("k", timeout=T)


async def test_a_read_only_database_is_a_backend_error_naming_the_file(
    driver: SqliteDriver, db: Path
) -> None:
    # Running as root, file modes cannot make the file read-only; query_only makes
    # SQLite answer SQLITE_READONLY through the same path as a read-only file would.
    await driver.set("k", b"before", timeout=T)
    await driver._run("lock", lambda c, now: c.execute("PRAGMA query_only = 1"), timeout=T, write=False)
    with pytest.raises(lockstep.BackendError, match="read-only") as info:
        await driver.set("k", b"after", timeout=T)
    assert str(db) in str(info.value)
    assert await driver.get("k", timeout=T) == b"before"
