"""Every exception lockstep raises, in one tree.

Catch ``LockstepError`` to catch them all. The Rust core raises the same classes
through one error map (``rust/python/src/errors.rs``), so a malformed envelope
from Rust and a bad URL from Python are told apart the same way.

    LockstepError
    ├── ConfigError (ValueError) ............ the URL, an option or a config file is wrong
    │   ├── UnknownSchemeError .............. names the known schemes and the closest
    │   └── BadOptionError .................. names the option and the accepted ones
    ├── CapabilityError ..................... the driver lacks a required capability
    ├── InvalidInputError (ValueError) ...... an argument or wire data is malformed
    │   ├── InvalidNameError ................ a channel, lock, agent or key name
    │   ├── EnvelopeError ................... a message envelope cannot be decoded
    │   │   └── MessageTooLargeError ........ over the size limit
    │   └── ProtocolError ................... malformed RESP from a server or a peer
    ├── BackendError ........................ the backend failed the call
    │   ├── BackendUnavailable (ConnectionError)  cannot reach it within the deadline
    │   ├── Timeout (TimeoutError) .......... an idempotent call ran past its deadline
    │   │   └── LockTimeout ................. a lease wait ran out; names the holders
    │   ├── OutcomeUnknown .................. a non-idempotent call was sent but its
    │   │                                     reply was lost: it may or may not have run
    │   └── DataLossDetected ................ the backend restarted or went backwards
    ├── MessagesLost ........................ a strict subscription hit a gap (``gap``)
    ├── LeaseLost ........................... a held lease expired or was taken over
    ├── ClaimConflict ....................... resources held by others (``conflicts``)
    ├── Reaped .............................. this agent was declared dead and cleaned up
    ├── RateLimited ......................... over a rate limit (``retry_after`` seconds)
    ├── WaitError ........................... a coordination wait ended badly
    │   ├── WaitTimeout (Timeout) ........... a signal did not come by the deadline
    │   └── CircularDependencyError (ValueError)  names the cycle
    └── SignatureError ...................... a forged, replayed or unsigned ACK

Every error carries a message that names what was wrong; several carry the
offending value as an attribute too, so code can act on it without parsing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "BadOptionError",
    "CapabilityError",
    "CircularDependencyError",
    "ClaimConflict",
    "ConfigError",
    "DataLossDetected",
    "EnvelopeError",
    "InvalidInputError",
    "InvalidNameError",
    "LeaseLost",
    "LockTimeout",
    "LockstepError",
    "MessageTooLargeError",
    "MessagesLost",
    "OutcomeUnknown",
    "ProtocolError",
    "RateLimited",
    "Reaped",
    "SignatureError",
    "Timeout",
    "UnknownSchemeError",
    "WaitError",
    "WaitTimeout",
]


class LockstepError(Exception):
    """Base of every error lockstep raises."""


class ConfigError(LockstepError, ValueError):
    """The URL, an option, or a configuration file is wrong."""


class UnknownSchemeError(ConfigError):
    def __init__(self, scheme: str, known: Sequence[str], closest: str | None = None) -> None:
        self.scheme = scheme
        self.known = tuple(known)
        self.closest = closest
        hint = f"; did you mean {closest!r}?" if closest else ""
        super().__init__(
            f"unknown URL scheme {scheme!r}{hint} Known schemes: {', '.join(self.known)}"
        )


class BadOptionError(ConfigError):
    def __init__(
        self, option: str, reason: str, accepted: Iterable[str] = (), closest: str | None = None
    ) -> None:
        self.option = option
        self.accepted = tuple(sorted(accepted))
        self.closest = closest
        msg = f"bad option {option!r}: {reason}"
        if closest:
            msg += f"; did you mean {closest!r}?"
        if self.accepted:
            msg += f" Accepted options: {', '.join(self.accepted)}"
        super().__init__(msg)


class CapabilityError(LockstepError):
    def __init__(self, driver: str, missing: Iterable[str], hint: str = "") -> None:
        self.driver = driver
        self.missing = tuple(sorted(missing))
        msg = f"the {driver} driver lacks {', '.join(self.missing)}"
        if hint:
            msg += f": {hint}"
        super().__init__(msg)


class InvalidInputError(LockstepError, ValueError):
    """An argument, or data read from the wire, is malformed."""


class InvalidNameError(InvalidInputError):
    """A channel, lock, agent, group or key name breaks the documented pattern."""


class EnvelopeError(InvalidInputError):
    """A message envelope cannot be encoded or decoded."""


class MessageTooLargeError(EnvelopeError):
    """A message is over the size limit."""


class ProtocolError(InvalidInputError):
    """Malformed RESP from a server or a peer."""


class BackendError(LockstepError):
    """The backend failed the call."""


class BackendUnavailable(BackendError, ConnectionError):
    """The backend cannot be reached within the deadline."""


class Timeout(BackendError, TimeoutError):
    """An idempotent call ran past its deadline; it is safe to call again."""


class LockTimeout(Timeout):
    """A lock or semaphore wait ran out before the lease was granted.

    ``resource`` names what was waited for and ``holders`` the members holding it at
    the last look (empty when unknown, e.g. the backend did not answer).
    """

    def __init__(self, resource: str, holders: Sequence[str], waited: float, detail: str = "") -> None:
        self.resource = resource
        self.holders = tuple(holders)
        self.waited = waited
        who = f"held by {', '.join(self.holders)}" if self.holders else "holder unknown"
        msg = f"could not acquire {resource!r} within {waited:g} s: {who}"
        if detail:
            msg += f" ({detail})"
        super().__init__(msg)


class OutcomeUnknown(BackendError):
    """A non-idempotent call was sent, but its reply was lost.

    It may or may not have taken effect. lockstep never retries such a call
    blindly; it either resolves the outcome by token or raises this.
    """


class DataLossDetected(BackendError):
    """The backend restarted or its counters went backwards (e.g. Redis without AOF)."""


class MessagesLost(LockstepError):
    """Messages were lost (a disconnect, an eviction, a trim): raised by a subscription
    opened with ``strict=True`` in place of yielding the :class:`~lockstep.messaging.Gap`
    (``gap``). The subscription stays usable: iterate again to continue after the gap."""

    def __init__(self, gap: object) -> None:
        self.gap = gap
        super().__init__(f"messages lost: {getattr(gap, 'detail', gap)}")


class LeaseLost(LockstepError):
    """A lease held by this process expired or was taken over."""


class ClaimConflict(LockstepError):
    """Some of the resources asked for (all or nothing) are held by others.

    ``conflicts`` maps each conflicting resource to the member holding it (or first in
    line for it). Nothing was taken.
    """

    def __init__(self, conflicts: Mapping[str, str], waited: float = 0.0) -> None:
        self.conflicts = dict(conflicts)
        self.waited = waited
        shown = ", ".join(f"{r!r} (held by {who})" for r, who in list(self.conflicts.items())[:10])
        more = f" and {len(self.conflicts) - 10} more" if len(self.conflicts) > 10 else ""
        super().__init__(f"{len(self.conflicts)} resource(s) held by others: {shown}{more}")


class Reaped(LockstepError):
    """This agent was declared dead by a sweep and its state was cleaned up."""


class RateLimited(LockstepError):
    """Over a rate limit. ``retry_after`` says when to try again, in seconds."""

    def __init__(self, message: str = "rate limited", retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class WaitError(LockstepError):
    """A coordination wait ended badly."""


class WaitTimeout(WaitError, Timeout):
    """A wait for a signal ran out: nothing newer than ``after_generation`` came from
    ``source`` under ``name`` within ``waited`` seconds (a Timeout too: safe to wait again)."""

    def __init__(self, message: str, *, source: str = "", name: str = "", waited: float = 0.0) -> None:
        self.source = source
        self.name = name
        self.waited = waited
        super().__init__(message)


class CircularDependencyError(WaitError, ValueError):
    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(f"Circular dependency detected: {' -> '.join(self.cycle)}")


class SignatureError(LockstepError):
    """A forged, replayed or unsigned ACK."""
