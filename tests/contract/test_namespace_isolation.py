"""Namespaces sharing one backend (one memory space, one SQLite file, one Redis db) never share state."""

from __future__ import annotations

import lockstep


async def test_same_lock_name_in_two_namespaces_is_two_locks(url: str) -> None:
    async with lockstep.connect(url, namespace="iso-a") as a, lockstep.connect(url, namespace="iso-b") as b:
        held_a = await a.lock("shared-name", ttl=5, wait=0)
        held_b = await b.lock("shared-name", ttl=5, wait=0)
        try:
            assert [h.owner for h in await a.lease_holders("shared-name")] == [a.member]
            assert [h.owner for h in await b.lease_holders("shared-name")] == [b.member]
        finally:
            await held_a.release()
            await held_b.release()
