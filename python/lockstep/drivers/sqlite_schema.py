"""The SQLite database file: where it is, who may read it, its schema, and every
statement that reads or writes its tables (the driver in :mod:`.sqlite` owns
the thread, the deadlines and the transactions; this module owns the layout).

The file and its folder are private to the user: a folder we create is 0700 and
the database is created 0600 *before* SQLite opens it (SQLite gives its ``-wal``
and ``-shm`` files the database file's permissions). The schema is versioned by
``PRAGMA user_version`` and upgraded by :func:`migrate` inside one write
transaction, so two processes opening a fresh file at once cannot both build it.
``PRAGMA application_id`` marks the file as lockstep's, so pointing the URL at
another program's database is refused instead of scribbled on.

Layout (version 1)::

    kv(key TEXT PRIMARY KEY, kind 'str'|'hash', value BLOB, expires_at REAL NULL)
    hash_field(key, field, value, PRIMARY KEY(key, field))

A key is one ``kv`` row; a hash's fields live in ``hash_field``, so a TTL
applies to the whole key, hashes included, as in Redis. ``expires_at`` is Unix
seconds on the host clock; expired rows are invisible to reads and purged in
bounded batches by writes (the partial index keeps that cheap).
"""

from __future__ import annotations

import errno
import os
import random
import sqlite3
import stat
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailable, ConfigError
from .local_rules import add_to_counter, wrong_type

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "create_private_file", "enable_wal", "migrate", "resolve_path"]

APPLICATION_ID = 0x4C4B5354  # "LKST"

#: MIGRATIONS[n] upgrades a database from version n to n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE kv (
               key TEXT PRIMARY KEY NOT NULL,
               kind TEXT NOT NULL CHECK (kind IN ('str', 'hash')),
               value BLOB,
               expires_at REAL
           ) WITHOUT ROWID""",
        "CREATE INDEX kv_expires_at ON kv(expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE hash_field (
               key TEXT NOT NULL,
               field TEXT NOT NULL,
               value BLOB NOT NULL,
               PRIMARY KEY (key, field)
           ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


def resolve_path(location: str, base_dir: str) -> Path:
    """The database path named by a ``file://`` URL's location.

    ``file:///abs/coord.db`` gives ``/abs/coord.db``; ``file://./x/coord.db`` is
    relative to ``base_dir`` (the config file's folder, else the working
    directory). Percent-escapes are decoded and ``~`` is the home folder.
    """
    text = urllib.parse.unquote(location)
    if not text.strip():
        raise ConfigError(
            "file: the URL names no database file; write file:///absolute/path/coord.db "
            "or file://./relative/path/coord.db"
        )
    if text.endswith("/"):
        raise ConfigError(f"file: {text!r} names a folder; add the database file name, e.g. {text}coord.db")
    path = Path(os.path.expanduser(text))
    if not path.is_absolute():
        path = Path(base_dir or os.getcwd()) / path
    return Path(os.path.normpath(path))


def _make_private_dirs(folder: Path) -> None:
    """Create the missing folders of ``folder``, each 0700; existing ones are left alone."""
    missing: list[Path] = []
    probe = folder
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for item in reversed(missing):
        try:
            os.mkdir(item, 0o700)
        except FileExistsError:
            continue  # another process made it first; its mode is its own
        os.chmod(item, 0o700)  # the umask may have narrowed it; make it exactly 0700


def create_private_file(path: Path) -> bool:
    """Make sure ``path`` is a regular file we can open, creating it 0600; True if created.

    An existing file is looked at (stat, access), never opened: this process may already
    have SQLite connections to it, and closing ANY descriptor of a file drops all of the
    process's POSIX locks on it -- SQLite's shared lock on a WAL database included, which
    is what stops another process's last close from deleting the -wal and -shm in use."""
    try:
        _make_private_dirs(path.parent)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            mode = os.stat(path).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path)) from None
            if not stat.S_ISREG(mode):
                raise ConfigError(f"file: {path} is not a regular file") from None
            if not os.access(path, os.R_OK | os.W_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path)) from None
            return False
        try:
            os.fchmod(fd, 0o600)  # new, so no SQLite connection of ours can hold locks on it
        finally:
            os.close(fd)
    except IsADirectoryError:
        raise ConfigError(f"file: {path} is a folder, not a database file") from None
    except NotADirectoryError as exc:
        raise ConfigError(f"file: a part of {path} is a file, not a folder: {exc.strerror}") from None
    except OSError as exc:
        raise BackendUnavailable(f"file: cannot create or open {path}: {exc.strerror or exc}") from exc
    return True


def enable_wal(conn: sqlite3.Connection, path: Path, *, give_up_at: float) -> None:
    """Put the database in WAL mode (a persistent setting), retrying while others hold it.

    Switching needs an exclusive lock taken by upgrading a shared one, and SQLite
    answers such an upgrade with SQLITE_BUSY at once, without its busy handler, when
    another connection holds a shared lock too (two processes opening a fresh file).
    So retry here, with jitter, until ``give_up_at`` (time.monotonic()).
    """
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:
            busy = (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= give_up_at:
                raise
            time.sleep(0.002 + random.random() * 0.01)
    if mode != "wal":
        raise ConfigError(
            f"file: SQLite could not put {path} in WAL mode (it stayed {mode!r}); WAL needs a local "
            "filesystem with shared-memory (mmap) support and a writable folder for the -wal and "
            "-shm files"
        )


def migrate(conn: sqlite3.Connection, path: Path) -> int:
    """Bring the schema to SCHEMA_VERSION; returns the version found before."""
    found = _version(conn)
    if found == SCHEMA_VERSION:
        _check_owner(conn, path, found)
        return found
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = _version(conn)  # another process may have migrated while we waited
        _check_owner(conn, path, found)
        for step in MIGRATIONS[found:]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return found


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_owner(conn: sqlite3.Connection, path: Path, version: int) -> None:
    app_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
    if app_id not in (0, APPLICATION_ID):
        raise ConfigError(f"file: {path} belongs to another program (application_id {app_id:#x})")
    if version > SCHEMA_VERSION:
        raise ConfigError(
            f"file: {path} has schema version {version}, written by a newer lockstep; "
            f"this one reads up to version {SCHEMA_VERSION}: upgrade lockstep"
        )
    if version == 0:
        tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if tables:
            raise ConfigError(f"file: {path} is another program's SQLite database, not lockstep's")


# -- statements: each takes the connection and the host clock's ``now`` ------------------
# Reads run alone; writes run inside the driver's BEGIN IMMEDIATE, after purge_expired.
LIVE = "(expires_at IS NULL OR expires_at > ?)"
CHUNK = 500  # bound variables per statement, well under SQLite's limit
PURGE_BATCH = 128  # expired keys dropped per write
Row = tuple[str, Any, float | None]  # kind, value, expires_at


def _chunks(items: Sequence[str]) -> Iterator[tuple[str, Sequence[str]]]:
    """(placeholders, items) per slice of at most CHUNK items."""
    for start in range(0, len(items), CHUNK):
        part = items[start : start + CHUNK]
        yield ",".join("?" * len(part)), part


def purge_expired(conn: sqlite3.Connection, now: float) -> None:
    """Drop a bounded batch of expired keys (found through the expires_at index)."""
    batch = f"SELECT key FROM kv WHERE expires_at <= ? ORDER BY expires_at LIMIT {PURGE_BATCH}"
    conn.execute(f"DELETE FROM hash_field WHERE key IN ({batch})", (now,))
    conn.execute(f"DELETE FROM kv WHERE key IN ({batch})", (now,))


def _claim(conn: sqlite3.Connection, now: float, key: str) -> Row | None:
    """The key's live row for a write; an expired one is dropped with its fields first."""
    row: Row | None = conn.execute("SELECT kind, value, expires_at FROM kv WHERE key = ?", (key,)).fetchone()
    if row is not None and row[2] is not None and row[2] <= now:
        _drop(conn, "?", [key])
        return None
    return row


def _drop(conn: sqlite3.Connection, marks: str, keys: Sequence[str]) -> None:
    conn.execute(f"DELETE FROM hash_field WHERE key IN ({marks})", tuple(keys))
    conn.execute(f"DELETE FROM kv WHERE key IN ({marks})", tuple(keys))


def live_keys(conn: sqlite3.Connection, now: float) -> int:
    return int(conn.execute(f"SELECT count(*) FROM kv WHERE {LIVE}", (now,)).fetchone()[0])


def get(conn: sqlite3.Connection, now: float, key: str) -> bytes | None:
    row = conn.execute(f"SELECT kind, value FROM kv WHERE key = ? AND {LIVE}", (key, now)).fetchone()
    if row is None:
        return None
    if row[0] != "str":
        raise wrong_type("file", "get", key, "hash")
    return bytes(row[1])


def mget(conn: sqlite3.Connection, now: float, keys: list[str]) -> list[bytes | None]:
    found: dict[str, bytes] = {}
    conn.execute("BEGIN")  # one snapshot across the chunks
    try:
        for marks, part in _chunks(list(dict.fromkeys(keys))):
            sql = f"SELECT key, value FROM kv WHERE key IN ({marks}) AND kind = 'str' AND {LIVE}"
            found.update((k, bytes(v)) for k, v in conn.execute(sql, (*part, now)))
    finally:
        conn.execute("COMMIT")
    return [found.get(k) for k in keys]  # nil for a missing key or a hash, as in Redis


def set_value(
    conn: sqlite3.Connection, now: float, key: str, data: bytes, ttl: float | None, only_if_absent: bool
) -> bool:
    row = _claim(conn, now, key)
    if row is not None and only_if_absent:
        return False
    if row is not None and row[0] == "hash":
        conn.execute("DELETE FROM hash_field WHERE key = ?", (key,))
    expires_at = None if ttl is None else now + ttl
    conn.execute("INSERT OR REPLACE INTO kv VALUES (?, 'str', ?, ?)", (key, data, expires_at))
    return True


def delete(conn: sqlite3.Connection, now: float, keys: list[str]) -> int:
    live = 0
    for marks, part in _chunks(list(dict.fromkeys(keys))):
        live += conn.execute(
            f"SELECT count(*) FROM kv WHERE key IN ({marks}) AND {LIVE}", (*part, now)
        ).fetchone()[0]
        _drop(conn, marks, part)
    return live


def incr(conn: sqlite3.Connection, now: float, key: str, amount: int) -> int:
    row = _claim(conn, now, key)
    if row is not None and row[0] == "hash":
        raise wrong_type("file", "incr", key, "hash")
    total = add_to_counter("file", key, None if row is None else bytes(row[1]), amount)
    expires_at = None if row is None else row[2]  # INCR keeps the TTL
    conn.execute("INSERT OR REPLACE INTO kv VALUES (?, 'str', ?, ?)", (key, str(total).encode(), expires_at))
    return total


def expire(conn: sqlite3.Connection, now: float, key: str, ttl: float) -> bool:
    if _claim(conn, now, key) is None:
        return False
    conn.execute("UPDATE kv SET expires_at = ? WHERE key = ?", (now + ttl, key))
    return True


def ttl(conn: sqlite3.Connection, now: float, key: str) -> float | None:
    row = conn.execute(f"SELECT expires_at FROM kv WHERE key = ? AND {LIVE}", (key, now)).fetchone()
    return None if row is None or row[0] is None else float(row[0]) - now


def hset(conn: sqlite3.Connection, now: float, key: str, fields: Mapping[str, bytes]) -> int:
    row = _claim(conn, now, key)
    if row is not None and row[0] == "str":
        raise wrong_type("file", "hset", key, "string value")
    if row is None:
        conn.execute("INSERT INTO kv VALUES (?, 'hash', NULL, NULL)", (key,))
    existing = 0
    for marks, part in _chunks(list(fields)):
        sql = f"SELECT count(*) FROM hash_field WHERE key = ? AND field IN ({marks})"
        existing += conn.execute(sql, (key, *part)).fetchone()[0]
    conn.executemany(
        "INSERT OR REPLACE INTO hash_field VALUES (?, ?, ?)", ((key, f, v) for f, v in fields.items())
    )
    return len(fields) - existing


def hget(conn: sqlite3.Connection, now: float, key: str, field: str) -> bytes | None:
    sql = (
        "SELECT kv.kind, h.value FROM kv LEFT JOIN hash_field h ON h.key = kv.key AND h.field = ? "
        f"WHERE kv.key = ? AND {LIVE}"
    )
    row = conn.execute(sql, (field, key, now)).fetchone()
    if row is None:
        return None
    if row[0] != "hash":
        raise wrong_type("file", "hget", key, "string value")
    return None if row[1] is None else bytes(row[1])


def hgetall(conn: sqlite3.Connection, now: float, key: str) -> dict[str, bytes]:
    sql = (
        "SELECT kv.kind, h.field, h.value FROM kv LEFT JOIN hash_field h ON h.key = kv.key "
        f"WHERE kv.key = ? AND {LIVE}"
    )
    rows = conn.execute(sql, (key, now)).fetchall()
    if rows and rows[0][0] != "hash":
        raise wrong_type("file", "hgetall", key, "string value")
    return {f: bytes(v) for _, f, v in rows if f is not None}


def hdel(conn: sqlite3.Connection, now: float, key: str, fields: list[str]) -> int:
    row = _claim(conn, now, key)
    if row is None:
        return 0
    if row[0] != "hash":
        raise wrong_type("file", "hdel", key, "string value")
    gone = 0
    for marks, part in _chunks(list(dict.fromkeys(fields))):
        gone += conn.execute(
            f"DELETE FROM hash_field WHERE key = ? AND field IN ({marks})", (key, *part)
        ).rowcount
    if conn.execute("SELECT 1 FROM hash_field WHERE key = ? LIMIT 1", (key,)).fetchone() is None:
        conn.execute("DELETE FROM kv WHERE key = ?", (key,))  # Redis drops an empty hash
    return gone
