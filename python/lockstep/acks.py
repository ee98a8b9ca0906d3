"""ACKs: who acknowledged a signal, signed with a shared secret when there is one.

    sig = await coord.signal("sprint-1", "deploy", {"build": 42})
    await coord.ack(sig, by="sprint-2")                       # in sprint-2
    result = await coord.wait_acks(sig, ["sprint-2", "sprint-3"], timeout=30)
    result.acked, result.missing, result.rejected

An ACK is one key per (signal generation, party), next to the signal's log:
``ls:NS:{sig:TARGET}:NAME:ack:GEN:PARTY``, so :func:`wait_acks` reads every party's in
one ``MGET`` and acking twice is harmless. ACK keys expire after :data:`ACK_TTL`.

With a secret (``coord.signals(secret=...)``, ``BlockingCoordinationManager(...,
secret=...)``), each ACK carries an HMAC-SHA256 over the namespace, the signal's
target, name and generation, the acknowledging party, the SHA-256 of the signal's
payload and the ACK's own payload. :func:`verify` rejects, with
:class:`~lockstep.errors.SignatureError` (never a crash):

* a **replayed** ACK: made for another generation of the signal (or another payload);
* a **forged** one: a wrong or missing signature, or stored under another party's name;
* a malformed one.

:func:`wait_acks` never raises for those: it lists them in ``rejected`` and keeps
waiting for a valid ACK from that party until its deadline.

HMAC is Python's stdlib ``hmac`` over OpenSSL's SHA-256 (microseconds per ACK, with
``hmac.compare_digest`` for a constant-time comparison): doing it in the Rust core
would save nothing measurable and tie ACKs to a rebuild of the extension.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import InvalidInputError, SignatureError
from .signals import MIN_CALL, Signal, encode_data, hmac_hex, party_id

if TYPE_CHECKING:
    from .signals import Signals

__all__ = ["ACK_TTL", "Ack", "AckResult", "ack", "verify", "wait_acks"]

ACK_TTL = 86_400.0  # s an ACK is kept
MAX_PARTIES = 10_000
_MAC_CONTEXT = b"lockstep-ack-v1"


@dataclass(frozen=True)
class Ack:
    """One valid acknowledgement of one signal generation."""

    party: str
    target: str
    name: str
    generation: int
    data: Any
    ts: float  #: the acknowledging host's clock, Unix seconds
    signed: bool


@dataclass(frozen=True)
class AckResult:
    """What :func:`wait_acks` found by its deadline (or as soon as every party acked)."""

    acked: dict[str, Ack]
    missing: list[str]  #: parties with no valid ACK
    rejected: dict[str, SignatureError] = field(default_factory=dict)  #: invalid ACKs found, by party
    waited: float = 0.0

    @property
    def complete(self) -> bool:
        return not self.missing

    def __bool__(self) -> bool:
        return self.complete


class _AckRecord(msgspec.Struct, frozen=True):
    party: str
    gen: int
    digest: str
    ts: float
    data: msgspec.Raw = msgspec.Raw(b"null")
    mac: str | None = None


_DECODER = msgspec.json.Decoder(_AckRecord)


def ack_key(signals: Signals, signal: Signal, party: str) -> str:
    return f"{signals.log_key(signal.target, signal.name)}:ack:{signal.generation}:{party}"


def ack_topic(signal: Signal) -> str:
    return f"ack {signal.target} {signal.name} {signal.generation}"


def _mac(secret: bytes, namespace: str, signal: Signal, party: str, generation: int, payload_digest: str,
         data: bytes) -> str:  # fmt: skip
    fields = [namespace, signal.target, signal.name, str(generation), party, payload_digest]
    return hmac_hex(secret, _MAC_CONTEXT, fields, data)


def _check_signal(signal: object) -> Signal:
    if not isinstance(signal, Signal):
        raise InvalidInputError(f"expected a Signal (from signal() or wait_signal()), got {type(signal).__name__}")
    return signal


async def ack(signals: Signals, signal: Signal, *, by: Any, data: Any, timeout: float) -> Ack:
    """Record ``by``'s ACK of ``signal`` (signed when ``signals`` has a secret) and wake waiters."""
    signal = _check_signal(signal)
    party = party_id(signals.coord.member if by is None else by)
    raw = encode_data(data, what="the ACK's data")
    mac = None
    if signals.secret is not None:
        mac = _mac(signals.secret, signals.coord.namespace, signal, party, signal.generation, signal.digest, raw)
    now = time.time()
    record = _AckRecord(party, signal.generation, signal.digest, now, msgspec.Raw(raw), mac)
    deadline = time.monotonic() + timeout
    await signals.coord.driver.set(
        ack_key(signals, signal, party), msgspec.json.encode(record), ttl=ACK_TTL, timeout=timeout
    )
    await signals.hub.notify(ack_topic(signal), timeout=max(MIN_CALL, deadline - time.monotonic()))
    return Ack(party, signal.target, signal.name, signal.generation, data, now, mac is not None)


def verify(signals: Signals, signal: Signal, party: str, stored: bytes) -> Ack:
    """The ACK ``stored`` under ``party`` for ``signal``, or SignatureError saying why not."""
    where = f"ACK of {party!r} for signal {signal.name!r} of {signal.target!r}, generation {signal.generation}"
    try:
        rec = _DECODER.decode(stored)
        data = msgspec.json.decode(rec.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise SignatureError(f"malformed {where}: {exc}") from None
    if rec.party != party:
        raise SignatureError(f"forged {where}: it names {rec.party!r} as its sender")
    if rec.gen != signal.generation:
        raise SignatureError(f"replayed {where}: it was made for generation {rec.gen}")
    if rec.digest != signal.digest:
        raise SignatureError(f"replayed {where}: it acknowledges a different payload")
    if signals.secret is not None:
        if rec.mac is None:
            raise SignatureError(f"unsigned {where}: a secret is configured, so every ACK must be signed")
        expected = _mac(signals.secret, signals.coord.namespace, signal, party, rec.gen, rec.digest, bytes(rec.data))
        if not hmac.compare_digest(expected, rec.mac):
            raise SignatureError(f"forged {where}: its HMAC-SHA256 does not match (wrong secret or altered)")
    return Ack(party, signal.target, signal.name, signal.generation, data, rec.ts, rec.mac is not None)


def _parties(parties: Sequence[Any]) -> list[str]:
    if isinstance(parties, str) or not isinstance(parties, Sequence | set | frozenset):
        raise InvalidInputError(f"parties must be a list of party ids or agents, got {parties!r}")
    ids = list(dict.fromkeys(party_id(p) for p in parties))
    if len(ids) > MAX_PARTIES:
        raise InvalidInputError(f"at most {MAX_PARTIES} parties, got {len(ids)}")
    return ids


async def wait_acks(signals: Signals, signal: Signal, parties: Sequence[Any], *, timeout: float) -> AckResult:
    """Wait until every party validly acked ``signal`` or ``timeout`` passes; never raises for
    a timeout (the result says who is missing) nor for a bad ACK (it is in ``rejected``)."""
    signal = _check_signal(signal)
    ids = _parties(parties)
    keys = [ack_key(signals, signal, p) for p in ids]
    started = time.monotonic()
    last: dict[str, Any] = {"acked": {}, "rejected": {}}

    async def check(left: float) -> bool | None:
        acked: dict[str, Ack] = {}
        rejected: dict[str, SignatureError] = {}
        for party, stored in zip(ids, await signals.coord.driver.mget(keys, timeout=left), strict=True):
            if stored is None:
                continue
            try:
                acked[party] = verify(signals, signal, party, stored)
            except SignatureError as exc:
                rejected[party] = exc
        last["acked"], last["rejected"] = acked, rejected
        return True if len(acked) == len(ids) else None

    if ids:
        await signals.until(ack_topic(signal), started + timeout, check)
    acked: dict[str, Ack] = last["acked"]
    return AckResult(
        acked={p: acked[p] for p in ids if p in acked},
        missing=[p for p in ids if p not in acked],
        rejected=last["rejected"],
        waited=time.monotonic() - started,
    )
