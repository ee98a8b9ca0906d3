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
    │   ├── OutcomeUnknown .................. a non-idempotent call was sent but its
    │   │                                     reply was lost: it may or may not have run
    │   └── DataLossDetected ................ the backend restarted or went backwards
    ├── LeaseLost ........................... a held lease expired or was taken over
    ├── Reaped .............................. this agent was declared dead and cleaned up
    ├── RateLimited ......................... over a rate limit (``retry_after`` seconds)
    ├── WaitError ........................... a coordination wait ended badly
    │   └── CircularDependencyError (ValueError)  names the cycle
    └── SignatureError ...................... a forged, replayed or unsigned ACK

Every error carries a message that names what was wrong; several carry the
offending value as an attribute too, so code can act on it without parsing.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "BadOptionError",
    "CapabilityError",
    "CircularDependencyError",
    "ConfigError",
    "DataLossDetected",
    "EnvelopeError",
    "InvalidInputError",
    "InvalidNameError",
    "LeaseLost",
    "LockstepError",
    "MessageTooLargeError",
    "OutcomeUnknown",
    "ProtocolError",
    "RateLimited",
    "Reaped",
    "SignatureError",
    "Timeout",
    "UnknownSchemeError",
    "WaitError",
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


class OutcomeUnknown(BackendError):
    """A non-idempotent call was sent, but its reply was lost.

    It may or may not have taken effect. lockstep never retries such a call
    blindly; it either resolves the outcome by token or raises this.
    """


class DataLossDetected(BackendError):
    """The backend restarted or its counters went backwards (e.g. Redis without AOF)."""


class LeaseLost(LockstepError):
    """A lease held by this process expired or was taken over."""


class Reaped(LockstepError):
    """This agent was declared dead by a sweep and its state was cleaned up."""


class RateLimited(LockstepError):
    """Over a rate limit. ``retry_after`` says when to try again, in seconds."""

    def __init__(self, message: str = "rate limited", retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class WaitError(LockstepError):
    """A coordination wait ended badly."""


class CircularDependencyError(WaitError, ValueError):
    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = tuple(cycle)
        super().__init__(f"Circular dependency detected: {' -> '.join(self.cycle)}")


class SignatureError(LockstepError):
    """A forged, replayed or unsigned ACK."""
