"""Durable signals, and the waiting loop that ACKs and barriers share.

    sig = await coord.signal("sprint-1", "interface_ready", {"file": "auth-api.ts"})
    got = await coord.wait_signal("sprint-1", "interface_ready", timeout=600)
    got.data, got.generation, got.sender

A signal is an entry in a log per (target, name) on the backend (see
:mod:`lockstep.drivers.signal_store`): each one gets the next **generation**, so a
new signal never overwrites one not yet read, and a reader walks them in order with
``after_generation``. Retention keeps the newest ``keep`` (default 100) per log; a
reader that fell behind further than that gets the oldest one left with
:attr:`Signal.skipped` saying how many it missed: never dropped in silence.

Waiting (RELIABILITY.md promise 3): a waiter subscribes to wake-ups *before* it first
checks the log, re-checks on every wake-up and at least every ``poll`` seconds, and
returns by its deadline: the signal, or :class:`~lockstep.errors.WaitTimeout`. Backend
calls inside a wait are bounded by what is left of it, and a backend that stalls or
drops out only makes the wait poll until the deadline (scenario 6).

ACKs (:mod:`lockstep.acks`) and barriers (:mod:`lockstep.barriers`) are built on the
same pieces; :class:`Signals` offers all three. ``coord.signals(secret=...)`` gives a
:class:`Signals` whose signals and ACKs carry an HMAC-SHA256, and which accepts only
validly signed ones: a signal's covers the namespace, target, name, sender, the sender's
send time and the payload. Reading an unsigned or forged signal with a secret raises
:class:`~lockstep.errors.SignatureError` (typed, never a crash). A signal's generation is
given by the backend after it was signed, so the MAC cannot cover it: a verbatim copy of
an old signal appended again to the same log verifies, and ``Signal.sent`` (signed) is
what shows its age.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from .drivers.signal_store import LogRead, SignalStore, check_keep
from .errors import (
    BackendUnavailable,
    EnvelopeError,
    InvalidInputError,
    MessageTooLargeError,
    OutcomeUnknown,
    SignatureError,
    Timeout,
    WaitTimeout,
)
from .names import validate_name
from .wakeups import WakeHub

if TYPE_CHECKING:
    from .acks import Ack, AckResult
    from .barriers import BarrierResult
    from .coordinator import Coordinator

__all__ = ["Signal", "SignalLog", "Signals", "SignalsShared"]

T = TypeVar("T")

MAX_DATA = 1 << 20  # bytes of JSON per signal or ACK payload
DEFAULT_POLL = 0.25  # s between checks when no wake-up comes
MIN_CALL = 0.005  # s: the shortest deadline a backend call inside a wait gets
SUBSCRIBE_SHARE = 0.5  # of a wait's time, at most, spent establishing the wake-up subscription


@dataclass(frozen=True)
class Signal:
    """One signal, as sent or as read."""

    target: str  #: the log it is in (whom it is about, or for)
    name: str
    generation: int  #: 1, 2, 3, ... per (target, name): strictly increasing
    data: Any
    sender: str  #: the member that sent it
    ts: float  #: the backend's clock when it was appended, Unix seconds
    digest: str  #: SHA-256 of the data as stored; what ACK signatures cover
    skipped: int = 0  #: generations after the reader's ``after_generation`` lost to retention
    signed: bool = False  #: carried a valid HMAC (always True when read with a secret)
    sent: float = 0.0  #: the sender's clock when it signed it (0.0: unsigned)


@dataclass(frozen=True)
class SignalLog:
    """One signal log of the namespace, as :meth:`Signals.logs` lists it."""

    target: str
    name: str
    first: int  #: the oldest generation retained
    last: int  #: the newest generation (the log's count of signals ever sent)
    ts: float | None  #: when the newest was sent, by the backend's clock (Unix seconds)


class _Record(msgspec.Struct, frozen=True, omit_defaults=True):
    sender: str
    data: msgspec.Raw = msgspec.Raw(b"null")
    sent: float = 0.0
    mac: str | None = None


_SIGNAL_MAC = b"lockstep-signal-v1"


def hmac_hex(secret: bytes, context: bytes, fields: Sequence[str], data: bytes) -> str:
    """HMAC-SHA256 over ``context``, ``fields`` and ``data``, \\x1f-separated (names never
    hold \\x1f; the payload, which may, comes last)."""
    message = b"\x1f".join([context, *(f.encode() for f in fields), data])
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def _signal_mac(secret: bytes, namespace: str, target: str, name: str, sender: str, sent: float, raw: bytes) -> str:
    return hmac_hex(secret, _SIGNAL_MAC, [namespace, target, name, sender, repr(sent)], raw)


_RECORD = msgspec.json.Decoder(_Record)
_ANY = msgspec.json.Decoder()


def encode_data(data: Any, *, what: str) -> bytes:
    """``data`` as JSON, refusing what JSON cannot carry and anything over MAX_DATA."""
    try:
        raw = msgspec.json.encode(data)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInputError(f"{what} must be JSON-encodable (dict, list, str, numbers, ...): {exc}") from None
    if len(raw) > MAX_DATA:
        raise MessageTooLargeError(f"{what} is {len(raw)} bytes of JSON; the limit is {MAX_DATA}")
    return raw


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def check_timeout(timeout: object, what: str = "timeout") -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (timeout > 0 and math.isfinite(timeout)):
        raise InvalidInputError(f"{what} must be a positive number of seconds, got {timeout!r}")
    return float(timeout)


def sig_topic(target: str, name: str) -> str:
    return f"sig {target} {name}"


class SignalsShared:
    """What every :class:`Signals` of one coordinator shares: the store and the wake-up hub."""

    def __init__(self, coord: Coordinator) -> None:
        self.coord = coord
        self.store: SignalStore = coord.driver.signal_store()
        self.hub = WakeHub(coord)

    async def close(self) -> None:
        await self.hub.close()


class Signals:
    """Signals, ACKs and barriers of one coordinator; see the module docstring.

    ``secret`` (bytes or str) makes ACKs carry an HMAC-SHA256 and :meth:`wait_acks`
    accept only ACKs signed with it. ``keep`` is the retention per log; ``poll`` the
    longest a waiter goes without checking the backend.
    """

    def __init__(
        self,
        coord: Coordinator,
        shared: SignalsShared,
        *,
        secret: bytes | str | None = None,
        keep: int = 100,
        poll: float = DEFAULT_POLL,
    ) -> None:
        self.coord = coord
        self.shared = shared
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and (not isinstance(secret, bytes) or len(secret) < 16):
            raise InvalidInputError("secret must be bytes or str of at least 16 bytes (use secrets.token_bytes(32))")
        self.secret = secret
        self.keep = check_keep(keep)
        self.poll = check_timeout(poll, "poll")

    @property
    def store(self) -> SignalStore:
        return self.shared.store

    @property
    def hub(self) -> WakeHub:
        return self.shared.hub

    def _call_timeout(self, timeout: float | None) -> float:
        return self.coord.timeout if timeout is None else check_timeout(timeout)

    def log_key(self, target: str, name: str) -> str:
        """``ls:NS:{sig:TARGET}:NAME``: a target's logs and their ACKs share one hash slot."""
        validate_name(target, what="signal target")
        return self.coord.keys.key("sig", target, validate_name(name, what="signal"))

    # -- signals ---------------------------------------------------------------------------
    async def signal(self, target: str, name: str, data: Any = None, *, timeout: float | None = None) -> Signal:
        """Append a signal to ``target``'s log ``name`` and wake its waiters.

        Never retried: a lost reply raises OutcomeUnknown (the signal may exist).
        """
        key = self.log_key(target, name)
        raw = encode_data(data, what=f"the data of signal {name!r}")
        sender = self.coord.member
        sent, mac = 0.0, None
        if self.secret is not None:
            sent = time.time()
            mac = _signal_mac(self.secret, self.coord.namespace, target, name, sender, sent, raw)
        record = msgspec.json.encode(_Record(sender, msgspec.Raw(raw), sent, mac))
        deadline = time.monotonic() + self._call_timeout(timeout)
        entry = await self.store.append(key, record, keep=self.keep, timeout=deadline - time.monotonic())
        await self.hub.notify(sig_topic(target, name), timeout=max(MIN_CALL, deadline - time.monotonic()))
        return Signal(target, name, entry.generation, data, sender, entry.ts, digest(raw), 0, mac is not None, sent)

    def _decode(self, target: str, name: str, read: LogRead) -> Signal:
        entry = read.entry
        assert entry is not None
        try:
            rec = _RECORD.decode(entry.record)
            data = _ANY.decode(rec.data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise EnvelopeError(
                f"signal {name!r} of {target!r}, generation {entry.generation}, is not a lockstep signal record: {exc}"
            ) from None
        raw = bytes(rec.data)
        if self.secret is not None:
            where = f"signal {name!r} of {target!r}, generation {entry.generation}, from {rec.sender!r}"
            if rec.mac is None:
                raise SignatureError(f"unsigned {where}: a secret is configured, so every signal must be signed")
            expected = _signal_mac(self.secret, self.coord.namespace, target, name, rec.sender, rec.sent, raw)
            if not hmac.compare_digest(expected, rec.mac):
                raise SignatureError(f"forged {where}: its HMAC-SHA256 does not match (wrong secret or altered)")
        signed = self.secret is not None
        return Signal(target, name, entry.generation, data, rec.sender, entry.ts, digest(raw), read.skipped, signed, rec.sent)

    async def latest(
        self, source: str, name: str, *, after_generation: int | None = None, timeout: float | None = None
    ) -> Signal | None:
        """Without waiting: the newest signal (or the first after ``after_generation``), or None."""
        key = self.log_key(source, name)
        after = _check_after(after_generation)
        read = await self.store.read(key, after, timeout=self._call_timeout(timeout))
        return None if read.entry is None else self._decode(source, name, read)

    async def wait_signal(
        self, source: str, name: str, *, timeout: float, after_generation: int | None = None
    ) -> Signal:
        """The newest signal ``name`` of ``source`` (with ``after_generation``: the first one
        after it), waiting up to ``timeout`` seconds for it. Raises WaitTimeout."""
        key = self.log_key(source, name)
        after = _check_after(after_generation)
        started = time.monotonic()
        deadline = started + check_timeout(timeout)

        async def check(left: float) -> Signal | None:
            read = await self.store.read(key, after, timeout=left)
            return None if read.entry is None else self._decode(source, name, read)

        found, error = await self.until(sig_topic(source, name), deadline, check)
        if found is None:
            what = f"signal {name!r} from {source!r}" + ("" if after is None else f" after generation {after}")
            cause = f"; the backend did not answer the last check: {error}" if error else ""
            raise WaitTimeout(
                f"no {what} within {timeout:g} s{cause}", source=source, name=name, waited=time.monotonic() - started
            )
        return found

    async def forget(self, target: str, name: str, *, timeout: float | None = None) -> bool:
        """Delete the log ``name`` of ``target`` (generations then start again at 1)."""
        key = self.log_key(target, name)
        return await self.store.delete([key], timeout=self._call_timeout(timeout)) > 0

    async def logs(self, *, timeout: float | None = None) -> list[SignalLog]:
        """Every signal log of the namespace, by target then name (what ``lockstep status``
        shows). From the backend's table of logs, or its index of them on Redis."""
        prefix = self.coord.keys.kind_prefix("sig")
        found = []
        for info in await self.store.logs(prefix, timeout=self._call_timeout(timeout)):
            target, sep, name = info.key[len(prefix) :].partition("}:")
            if sep:  # names have no braces: "}:" ends the target
                found.append(SignalLog(target, name, info.first, info.last, info.ts))
        return found

    # -- the waiting loop ------------------------------------------------------------------
    async def until(
        self, topic: str, deadline: float, check: Callable[[float], Awaitable[T | None]]
    ) -> tuple[T | None, Exception | None]:
        """Run ``check(seconds left)`` until it returns something or ``deadline`` (monotonic)
        passes; subscribed to ``topic``'s wake-ups before the first check. Returns the
        result (None at the deadline) and the last backend error seen."""
        error: Exception | None = None
        with self.hub.watch(topic) as watch:
            await self.hub.ready(timeout=max(0.0, deadline - time.monotonic()) * SUBSCRIBE_SHARE)
            while True:
                left = deadline - time.monotonic()
                try:
                    result = await check(max(MIN_CALL, left))
                except (Timeout, BackendUnavailable, OutcomeUnknown) as exc:  # a check is a probe: re-run it
                    result, error = None, exc
                else:
                    error = None
                if result is not None:
                    return result, None
                left = deadline - time.monotonic()
                if left <= 0:
                    return None, error
                if not self.hub.subscribed:  # cheap retry; polling covers the meantime
                    await self.hub.ready(timeout=0)
                await watch.wait(min(self.poll, left))

    # -- ACKs and barriers (lockstep.acks, lockstep.barriers) -------------------------------
    async def ack(self, signal: Signal, *, by: Any = None, data: Any = None, timeout: float | None = None) -> Ack:
        """Acknowledge ``signal`` as ``by`` (an agent, an id; default: this member)."""
        from .acks import ack

        return await ack(self, signal, by=by, data=data, timeout=self._call_timeout(timeout))

    async def wait_acks(self, signal: Signal, parties: Sequence[Any], *, timeout: float) -> AckResult:
        """Who acknowledged ``signal`` (validly) within ``timeout``, and who did not."""
        from .acks import wait_acks

        return await wait_acks(self, signal, parties, timeout=check_timeout(timeout))

    async def barrier(
        self, name: str, parties: Sequence[Any], *, timeout: float, me: Any = None
    ) -> BarrierResult:
        """Arrive at barrier ``name`` as ``me`` and wait for the other ``parties``."""
        from .barriers import barrier

        return await barrier(self, name, parties, timeout=check_timeout(timeout), me=me)


def _check_after(after: object) -> int | None:
    if after is None:
        return None
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInputError(f"after_generation must be an int >= 0 or None, got {after!r}")
    return after


def party_id(party: Any, *, what: str = "party") -> str:
    """An agent (anything with ``.id``) or an id, as a validated name."""
    ident = getattr(party, "id", party)
    return validate_name(ident, what=what)
