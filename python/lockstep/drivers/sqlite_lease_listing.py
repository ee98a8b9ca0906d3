"""Inspection and retirement of the file driver's leases: listing and purging resources.

Kept apart from :mod:`.sqlite_leases` (the hot path). Both are jobs for the driver's
worker thread. The leases themselves live in record files (see
:mod:`.sqlite_lease_records`), one per resource, each holding its resource id: a listing
reads every record file under its lock and keeps the namespace's (ids starting with
``ls:NS:{``, see :meth:`~.lease_store.LeaseStore.rid`); fenced values are SQLite rows.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._core import LeaseTable
from .lease_store import LeaseStore, ResourceLeases, resource_leases

if TYPE_CHECKING:
    from .sqlite_leases import SqliteLeaseStore

__all__ = ["list_job", "purge_job"]

Conn = sqlite3.Connection


def list_job(store: SqliteLeaseStore, give_up: float) -> Callable[[Conn, float], list[ResourceLeases]]:
    """A job listing the busy resources of ``store``'s namespace (waits for busy records
    until ``give_up``, monotonic)."""
    prefix = store.rid_prefix()

    def job(conn: Conn, _started: float) -> list[ResourceLeases]:
        found = []
        records = store.records.scan(prefix, give_up)
        now = time.time()  # after the reads: an entry refreshed during the scan has not "more than its ttl" left
        for rid, (slots, fence, holders, waiters) in records:
            kind, name = LeaseStore.split_rid(rid)
            record = resource_leases(
                kind, name, slots, fence,
                [(token, owner, f, expires_at) for token, owner, _, f, expires_at in holders],
                [(ticket, owner, expires_at) for ticket, owner, _, expires_at in waiters],
                now,
            )  # fmt: skip
            if record is not None:
                found.append(record)
        return sorted(found, key=lambda r: (r.kind, r.name))

    return job


def purge_job(store: SqliteLeaseStore, rid: str, give_up: float) -> Callable[[Conn, float], bool]:
    """A write job forgetting resource ``rid`` (its record and fenced values) if nobody
    alive holds or waits for it.

    Holders and waiters whose process is proven gone (their liveness file, see
    :mod:`.sqlite_lease_records`) do not count: they are freed in the same step."""

    def idle(table: LeaseTable, now: float) -> bool:
        store._free_dead(table, [rid], now)
        return not table.holders(rid, now) and not table.queue(rid, now)

    def job(conn: Conn, now: float) -> bool:
        if not store.records.forget_blocking(rid, idle, give_up):
            return False
        conn.execute("DELETE FROM lease_value WHERE resource = ?", (rid,))
        return True

    return job
