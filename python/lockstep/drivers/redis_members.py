"""Membership of the Redis drivers: Lua scripts on the server clock, one round trip each.

Each operation is one script (``lua/member_*.lua`` after the shared prelude
``lua/member_common.lua``), run with EVALSHA and, when the server answers NOSCRIPT
(it did not run), with EVAL. Time is the server's ``TIME`` inside the script, so
heartbeats from many hosts are judged on one clock and staleness is decided in the
same atomic step that reaps.

Keys (``P`` = ``ls:NS:``)::

    P{agent:ID}                  hash: inc ttl iv meta host hid pid st ses reg
    P{agent:ID}:owned            zset: owned key -> expiry ms (+inf: none)
    P{agent:ID}:leases           hash: lease token -> JSON [kind, [names]]
    P{agent:ID}:kv:NAME          the agent's scratch values (owned)
    P{meta}:agents:beat          zset: agent -> last heartbeat ms
    P{meta}:agents:due           zset: agent -> last heartbeat + ttl ms
    P{meta}:agents:hosts         set of host ids with agents
    P{meta}:agents:host:HID      set of "pid:start" with agents on that host
    P{meta}:agents:proc:HID:PID:START   set of agents of one process
    P{meta}:agents:seq           the incarnation counter
    P{meta}:lifecycle            list: the newest 1000 lifecycle entries (JSON)

A sweep reads only the stale range of ``due`` (or ``beat`` for an explicit
threshold), so its work is proportional to the dead, not to the living. No key is
ever found by ``KEYS`` or ``SCAN``: the indexes name them. The scripts build
per-agent keys from the prefix, so they assume one Redis (not Cluster) for now.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import ProtocolError
from .member_store import (
    Claimed,
    MemberRecord,
    MemberStore,
    MemoryUsage,
    OwnedLease,
    Reason,
    Registration,
    lease_entry,
    parse_lease,
)
from .redis_info import parse_info
from .redis_scripts import LuaScript

if TYPE_CHECKING:
    from ..keys import Keyspace
    from .redis import RedisDriver

__all__ = ["RedisMemberStore"]

HEARTBEAT_CHUNK = 1000  #: agents per heartbeat script


REGISTER = LuaScript("member_register", prelude="member_common", idempotent=False)  # takes an incarnation
HEARTBEAT = LuaScript("member_heartbeat", prelude="member_common", idempotent=True)  # again = a later heartbeat
OWNED = LuaScript("member_owned", prelude="member_common", idempotent=False)
REAP = LuaScript("member_reap", prelude="member_common", idempotent=False)  # its reply carries the only list of leases
READ = LuaScript("member_read", prelude="member_common", idempotent=True)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisMemberStore(MemberStore):
    clock = "server"

    def __init__(self, driver: RedisDriver, keys: Keyspace) -> None:
        self.driver = driver
        self.prefix = keys.prefix
        self.keys = keys

    def _protocol(self, what: str, reply: Any) -> ProtocolError:
        return ProtocolError(f"{self.driver.name}: unexpected reply to {what}: {reply!r:.200}")

    def _claimed(self, rows: Any) -> list[Claimed]:
        try:
            out = []
            for agent, inc, age, deleted, flat, reason in rows:
                leases = tuple(parse_lease(_text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2))
                age_s = None if int(age) < 0 else int(age) / 1000
                out.append(Claimed(_text(agent), int(inc), _text(reason), age_s, int(deleted), leases))
            return out
        except (TypeError, ValueError, IndexError) as exc:
            raise self._protocol("member_reap", rows) from exc

    # -- the operations --------------------------------------------------------------
    async def register(self, reg: Registration, *, timeout: float) -> int | MemberRecord:
        args = [self.prefix, reg.agent, _ms(reg.ttl), _ms(reg.interval), reg.meta, reg.host, reg.hostid,
                reg.pid, reg.start, reg.session]  # fmt: skip
        reply = await REGISTER.run(self.driver, (), args, timeout=timeout)
        try:
            if int(reply[0]) == 1:
                return int(reply[1])
            inc, age, ttl, iv, meta, host, hid, pid, st, ses, reg_ms, beat = reply[1:]
            return MemberRecord(
                agent=reg.agent, incarnation=int(inc), last_beat=int(beat) / 1000, age=int(age) / 1000,
                ttl=int(ttl) / 1000, interval=int(iv) / 1000, meta=bytes(meta), host=_text(host),
                hostid=_text(hid), pid=int(pid), start=_text(st), session=_text(ses),
                registered_at=int(reg_ms) / 1000,
            )  # fmt: skip
        except (TypeError, ValueError, IndexError) as exc:
            raise self._protocol("member_register", reply) from exc

    async def heartbeat(self, beats: Sequence[tuple[str, int]], *, timeout: float) -> list[bool]:
        oks: list[bool] = []
        # One script per HEARTBEAT_CHUNK agents: a script blocks the server while it runs
        # (about 10 us per agent), so a huge batch is split rather than stall everyone.
        for start in range(0, len(beats), HEARTBEAT_CHUNK):
            args: list[Any] = [self.prefix]
            for agent, inc in beats[start : start + HEARTBEAT_CHUNK]:
                args += [agent, inc]
            reply = await HEARTBEAT.run(self.driver, (), args, timeout=timeout)
            oks += [int(x) == 1 for x in reply]
        return oks

    async def deregister(self, agent: str, incarnation: int, *, timeout: float) -> Claimed | None:
        reply = await REAP.run(self.driver, (), [self.prefix, "agent", "", agent, incarnation, "left"], timeout=timeout)
        found = self._claimed(reply)
        return found[0] if found else None

    async def put(
        self, agent: str, incarnation: int, key: str, value: bytes, ttl: float | None, *, timeout: float
    ) -> bool:
        args = [self.prefix, "put", agent, incarnation, key, bytes(value), "" if ttl is None else _ms(ttl)]
        return int(await OWNED.run(self.driver, (), args, timeout=timeout)) == 1

    async def delete_owned(self, agent: str, incarnation: int, key: str, *, timeout: float) -> bool | None:
        reply = await OWNED.run(self.driver, (), [self.prefix, "delete", agent, incarnation, key], timeout=timeout)
        return None if int(reply[0]) == 0 else int(reply[1]) == 1

    async def own_lease(self, agent: str, incarnation: int, lease: OwnedLease, *, timeout: float) -> bool:
        args = [self.prefix, "lease", agent, incarnation, lease.token, lease_entry(lease)]
        return int(await OWNED.run(self.driver, (), args, timeout=timeout)) == 1

    async def disown_lease(self, agent: str, token: str, *, timeout: float) -> None:
        await OWNED.run(self.driver, (), [self.prefix, "unlease", agent, 0, token], timeout=timeout)

    async def members(self, *, timeout: float) -> list[MemberRecord]:
        reply = await READ.run(self.driver, (), [self.prefix, "members"], timeout=timeout)
        try:
            now = int(reply[0])
            out = []
            for agent, beat, inc, ttl, iv, meta, host, hid, pid, st, ses, reg_ms, owned, leases in reply[1:]:
                out.append(MemberRecord(
                    agent=_text(agent), incarnation=int(inc), last_beat=int(beat) / 1000,
                    age=(now - int(beat)) / 1000, ttl=int(ttl) / 1000, interval=int(iv) / 1000,
                    meta=bytes(meta), host=_text(host), hostid=_text(hid), pid=int(pid), start=_text(st),
                    session=_text(ses), registered_at=int(reg_ms) / 1000, owned_keys=int(owned),
                    owned_leases=int(leases),
                ))  # fmt: skip
            return sorted(out, key=lambda r: r.agent)
        except (TypeError, ValueError, IndexError) as exc:
            raise self._protocol("member_read members", reply) from exc

    async def leases(self, agent: str, *, timeout: float) -> list[OwnedLease]:
        flat = await self.driver._call(
            "member leases", "HGETALL", self.keys.key("agent", agent, "leases"), idempotent=True, timeout=timeout
        )
        return [parse_lease(_text(flat[i]), flat[i + 1]) for i in range(0, len(flat), 2)]

    async def reap_stale(self, threshold: float | None, limit: int, reaper: str, *, timeout: float) -> list[Claimed]:
        if threshold is None:
            args = [self.prefix, "due", reaper, limit]
        else:
            args = [self.prefix, "beat", reaper, limit, _ms(threshold)]
        return self._claimed(await REAP.run(self.driver, (), args, timeout=timeout))

    async def local_processes(self, hostid: str, *, timeout: float) -> list[tuple[int, str]]:
        key = self.keys.meta("agents", "host", hostid)
        found = await self.driver._call("member processes", "SMEMBERS", key, idempotent=True, timeout=timeout)
        out = []
        for item in found:
            pid, _, start = _text(item).partition(":")
            out.append((int(pid), start))
        return sorted(out)

    async def reap_process(self, hostid: str, pid: int, start: str, reaper: str, *, timeout: float) -> list[Claimed]:
        args = [self.prefix, "process", reaper, hostid, pid, start]
        return self._claimed(await REAP.run(self.driver, (), args, timeout=timeout))

    async def reap_agent(
        self, agent: str, incarnation: int, reason: Reason, reaper: str, *, timeout: float
    ) -> Claimed | None:
        args = [self.prefix, "agent", reaper, agent, incarnation, reason]
        found = self._claimed(await REAP.run(self.driver, (), args, timeout=timeout))
        return found[0] if found else None

    async def lifecycle(self, limit: int, *, timeout: float) -> list[bytes]:
        key = self.keys.meta("lifecycle")
        return list(await self.driver._call("lifecycle", "LRANGE", key, 0, limit - 1, idempotent=True, timeout=timeout))

    async def memory(self, *, timeout: float) -> MemoryUsage:
        raw = await self.driver._call("memory usage", "INFO", "memory", idempotent=True, timeout=timeout)
        info = parse_info(raw)
        ns_bytes, keys = await READ.run(self.driver, (), [self.prefix, "memory"], timeout=timeout)
        return MemoryUsage(
            backend_bytes=int(info.get("used_memory", 0)),
            namespace_bytes=int(ns_bytes),
            keys=int(keys),
            detail={
                "used_memory_dataset": int(info.get("used_memory_dataset", 0)),
                "used_memory_rss": int(info.get("used_memory_rss", 0)),
                "mem_clients_normal": int(info.get("mem_clients_normal", 0)),
                "mem_aof_buffer": int(info.get("mem_aof_buffer", 0)),
                "how": "INFO used_memory; the namespace's share by MEMORY USAGE of the keys its indexes name",
            },
        )

    async def drop_indexes(self, *, timeout: float, keep_counter: bool = True) -> int:
        parts = ("beat", "due", "hosts") if keep_counter else ("beat", "due", "hosts", "seq")
        meta = [self.keys.meta("agents", part) for part in parts] + [self.keys.meta("lifecycle")]
        return int(await self.driver._call("drop indexes", "DEL", *meta, idempotent=False, timeout=timeout))
