"""lockstep.blocking: leases held from synchronous code, on a loop in a daemon thread."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest

from lockstep.blocking import BlockingCoordinator
from lockstep.errors import LockTimeout


def loop_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "lockstep-loop"]


def test_lock_ports_release_and_close(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'coord.db'}"
    before = len(loop_threads())
    with BlockingCoordinator(url, member="first") as first, BlockingCoordinator(url, member="second") as second:
        lease = first.lock("res", ttl=5, wait=0)
        assert lease.fence >= 1 and lease.lost_reason() is None
        with pytest.raises(LockTimeout) as caught:  # the lease wait's own error, not a facade timeout
            second.lock("res", ttl=5, wait=0.2)
        assert caught.value.holders == ("first",)
        assert lease.release() is True and lease.release() is True  # idempotent
        assert second.lock("res", ttl=5, wait=1).fence > lease.fence
        ports = first.ports(2, ttl=5, wait=5)
        for port in ports.ports:
            with socket.socket() as s:
                s.bind(("127.0.0.1", port))
        assert ports.release() is True
    assert len(loop_threads()) == before  # each close() stopped its thread
