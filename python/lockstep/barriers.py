"""Barriers: wait until every party has arrived; end released, timed out or broken.

    result = await coord.barrier("integration", ["s1", "s2", "s3"], timeout=60, me="s2")
    result.state      # "released" | "timed_out" | "broken"
    result.missing    # timed out: who had not arrived by the deadline
    result.dead       # broken: who died (membership) without arriving

**Rounds.** Each party counts its own arrivals at a barrier: its k-th call arrives at
round k (the count is kept on the backend, so a restarted process continues it).
Round k is decided once, for everyone, by whoever first sees how it ends: a
set-if-absent of the round's outcome key, so two parties never disagree. A party
arriving late, after its round timed out or broke, gets that round's outcome at once;
it never counts towards the next round, so a late arrival cannot release it. Every
call is one round: parties that all call once per round stay in step, and a late
party is back in step with its next call.

**Deadlines.** A party at its deadline records ``timed_out`` (missing: those not
arrived), spending at most :data:`CLOSE_GRACE` seconds on it. Each arrival key lives
only as long as its party waits (plus that grace), so if the record cannot be written
(the backend stalled), a late party still cannot release a round whose waiters have
gone. Every call returns by its deadline plus that grace.

**Broken.** While waiting, parties that have not arrived are looked up in membership
(``coord.members()``, at most every poll interval): a party whose agent is registered
but not alive (its heartbeats stopped, or its process on this host is gone), or that
was registered during the wait and has since vanished (reaped, or left), is dead,
and the round ends ``broken``. A party never registered as an agent is not judged.

Keys (hash tag ``{barrier:NAME}``): ``rounds`` (a hash: party -> its last round),
``r:K:a:PARTY`` (an arrival), ``r:K:end`` (the outcome).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .errors import (
    BackendUnavailable,
    CapabilityError,
    InvalidInputError,
    LockstepError,
    Timeout,
)
from .signals import MIN_CALL, party_id

if TYPE_CHECKING:
    from .signals import Signals

__all__ = ["BarrierResult", "barrier"]

log = logging.getLogger("lockstep.barriers")

State = Literal["released", "timed_out", "broken"]
OUTCOME_TTL = 86_400.0  # s a round's outcome is kept for parties arriving late
CLOSE_GRACE = 0.04  # s past the deadline allowed for recording a timed-out round


@dataclass(frozen=True)
class BarrierResult:
    name: str
    round: int
    state: State
    arrived: tuple[str, ...]
    missing: tuple[str, ...]  #: timed out: parties not arrived by the deadline
    dead: tuple[str, ...]  #: broken: parties that died without arriving
    waited: float
    decided_by: str = ""  #: the party that recorded the outcome ("" if none could be recorded)

    @property
    def released(self) -> bool:
        return self.state == "released"

    def __bool__(self) -> bool:
        return self.released


class _Arrival(msgspec.Struct, frozen=True):
    ts: float
    parties: str  #: digest of the party list, so parties that disagree about it are told


class _Outcome(msgspec.Struct, frozen=True):
    state: str
    by: str
    arrived: list[str]
    missing: list[str] = []
    dead: list[str] = []


class _DeathWatch:
    """Who among some parties is dead, by membership; see the module docstring."""

    def __init__(self, signals: Signals) -> None:
        self.signals = signals
        self.seen: set[str] = set()
        self.enabled = True
        self.next_at = 0.0

    async def dead(self, candidates: list[str], timeout: float) -> list[str]:
        now = time.monotonic()
        if not self.enabled or not candidates or now < self.next_at:
            return []
        self.next_at = now + self.signals.poll
        try:
            members = await self.signals.coord.members(timeout=timeout)
        except CapabilityError:
            self.enabled = False
            return []
        except (Timeout, BackendUnavailable):
            return []
        by_id = {m.agent_id: m for m in members}
        dead = []
        for party in candidates:
            info = by_id.get(party)
            if info is None:
                if party in self.seen:
                    dead.append(party)
            else:
                self.seen.add(party)
                if not info.alive:
                    dead.append(party)
        return dead


def _party_list(parties: Sequence[Any], me: str) -> list[str]:
    if isinstance(parties, str) or not isinstance(parties, Sequence | set | frozenset):
        raise InvalidInputError(f"parties must be a list of party ids or agents, got {parties!r}")
    ids = sorted(dict.fromkeys(party_id(p) for p in parties))
    if me not in ids:
        raise InvalidInputError(f"{me!r} is not one of the barrier's parties ({', '.join(ids)}); pass me=")
    return ids


class _Round:
    """One party's wait at one round of one barrier."""

    def __init__(self, signals: Signals, name: str, parties: list[str], me: str, deadline: float) -> None:
        self.signals = signals
        self.driver = signals.coord.driver
        self.name = name
        self.parties = parties
        self.me = me
        self.deadline = deadline
        self.set_digest = hashlib.sha256("\n".join(parties).encode()).hexdigest()[:16]
        self.number = 0
        self.arrived: list[str] = []
        self.deaths = _DeathWatch(signals)

    def key(self, *parts: str) -> str:
        return self.signals.coord.keys.key("barrier", self.name, *parts)

    @property
    def topic(self) -> str:
        return f"bar {self.name} {self.number}"

    async def arrive(self, timeout: float) -> None:
        give_up = time.monotonic() + timeout
        counts = self.key("rounds")
        before = await self.driver.hget(counts, self.me, timeout=timeout)
        self.number = int(before or 0) + 1
        await self.driver.hset(counts, {self.me: str(self.number).encode()}, timeout=give_up - time.monotonic())
        arrival = msgspec.json.encode(_Arrival(time.time(), self.set_digest))
        left = max(MIN_CALL, self.deadline - time.monotonic()) + CLOSE_GRACE
        await self.driver.set(self.key("r", str(self.number), "a", self.me), arrival, ttl=left,
                              timeout=max(MIN_CALL, give_up - time.monotonic()))  # fmt: skip
        await self.signals.hub.notify(self.topic, timeout=max(MIN_CALL, give_up - time.monotonic()))

    async def decide(self, outcome: _Outcome, timeout: float) -> _Outcome:
        """Record ``outcome`` unless the round already has one; return the one that holds."""
        end = self.key("r", str(self.number), "end")
        give_up = time.monotonic() + timeout
        if await self.driver.set(end, msgspec.json.encode(outcome), ttl=OUTCOME_TTL, only_if_absent=True, timeout=timeout):
            await self.signals.hub.notify(self.topic, timeout=max(MIN_CALL, give_up - time.monotonic()))
            return outcome
        stored = await self.driver.get(end, timeout=max(MIN_CALL, give_up - time.monotonic()))
        return outcome if stored is None else msgspec.json.decode(stored, type=_Outcome)

    async def check(self, timeout: float) -> _Outcome | None:
        give_up = time.monotonic() + timeout
        number = str(self.number)
        keys = [self.key("r", number, "a", p) for p in self.parties] + [self.key("r", number, "end")]
        *arrivals, end = await self.driver.mget(keys, timeout=timeout)
        if end is not None:
            return msgspec.json.decode(end, type=_Outcome)
        self.arrived = [p for p, raw in zip(self.parties, arrivals, strict=True) if raw is not None]
        for party, raw in zip(self.parties, arrivals, strict=True):
            if raw is not None and msgspec.json.decode(raw, type=_Arrival).parties != self.set_digest:
                raise InvalidInputError(
                    f"barrier {self.name!r} round {number}: {party!r} arrived with another list of parties "
                    f"than {self.me!r} ({', '.join(self.parties)}); every party must pass the same list"
                )
        missing = [p for p in self.parties if p not in self.arrived]
        if not missing:
            return await self.decide(_Outcome("released", self.me, self.arrived), give_up - time.monotonic())
        dead = await self.deaths.dead(missing, max(MIN_CALL, give_up - time.monotonic()))
        if dead:
            outcome = _Outcome("broken", self.me, self.arrived, missing, dead)
            return await self.decide(outcome, max(MIN_CALL, give_up - time.monotonic()))
        return None

    def result(self, outcome: _Outcome, started: float) -> BarrierResult:
        state: State = outcome.state if outcome.state in ("released", "timed_out", "broken") else "broken"  # type: ignore[assignment]
        return BarrierResult(self.name, self.number, state, tuple(outcome.arrived), tuple(outcome.missing),
                             tuple(outcome.dead), time.monotonic() - started, outcome.by)  # fmt: skip


async def barrier(signals: Signals, name: str, parties: Sequence[Any], *, timeout: float, me: Any) -> BarrierResult:
    """See the module docstring. Returns by ``timeout``, whatever the backend does."""
    started = time.monotonic()
    deadline = started + timeout
    myself = party_id(signals.coord.member if me is None else me, what="barrier party")
    party_id(name, what="barrier")
    rnd = _Round(signals, name, _party_list(parties, myself), myself, deadline)

    def timed_out(by: str) -> _Outcome:
        missing = [p for p in rnd.parties if p not in rnd.arrived]
        return _Outcome("timed_out", by, rnd.arrived, missing)

    try:
        await rnd.arrive(max(MIN_CALL, deadline - time.monotonic()))
    except LockstepError as exc:  # stalled or unreachable: not arrived, or not known to have
        log.debug("barrier %s: %s could not arrive: %s", name, myself, exc)
        return rnd.result(timed_out(""), started)
    rnd.arrived = [myself]
    found, _error = await signals.until(rnd.topic, deadline, rnd.check)
    if found is not None:
        return rnd.result(found, started)
    try:
        decided = await rnd.decide(timed_out(myself), CLOSE_GRACE)
    except LockstepError:  # the backend is not answering: our arrival key expires with our deadline
        decided = timed_out("")
    return rnd.result(decided, started)
