"""lockstep: coordination for parallel AI-agent work.

Messaging, fenced and auto-renewed leases, heartbeats and orphan cleanup,
signals and barriers, and shared rate limits, over one backend chosen by URL:
``memory://``, ``file://`` (SQLite, the default), ``redis://``, ``redis+streams://``.

    import lockstep

    async with lockstep.connect() as coord:
        await coord.ping()
"""

from __future__ import annotations

from . import errors
from ._core import VERSION as __version__
from .coordinator import Coordinator, connect
from .drivers.base import Capability, ServerInfo
from .leases import HolderInfo, Lease, LeaseRequest, LeaseWaiter, ResourceLeases
from .ports import PortLease
from .claims import Claim
from .messaging import Consumer, Delivery, Gap, Message, Subscription
from .acks import Ack, AckResult
from .barriers import BarrierResult
from .signals import Signal
from .ratelimit import Decision, RateLimiter
from .errors import (
    BackendError,
    BackendUnavailable,
    BadOptionError,
    CapabilityError,
    CircularDependencyError,
    ConfigError,
    DataLossDetected,
    EnvelopeError,
    InvalidInputError,
    InvalidNameError,
    ClaimConflict,
    LeaseLost,
    LockTimeout,
    LockstepError,
    MessagesLost,
    MessageTooLargeError,
    OutcomeUnknown,
    ProtocolError,
    RateLimited,
    Reaped,
    SignatureError,
    Timeout,
    UnknownSchemeError,
    WaitError,
    WaitTimeout,
)

__all__ = [
    "BackendError",
    "BackendUnavailable",
    "BadOptionError",
    "Capability",
    "CapabilityError",
    "CircularDependencyError",
    "ConfigError",
    "Coordinator",
    "DataLossDetected",
    "Decision",
    "EnvelopeError",
    "InvalidInputError",
    "InvalidNameError",
    "Claim",
    "ClaimConflict",
    "HolderInfo",
    "Lease",
    "LeaseLost",
    "LeaseRequest",
    "LeaseWaiter",
    "PortLease",
    "ResourceLeases",
    "LockTimeout",
    "LockstepError",
    "Consumer",
    "Delivery",
    "Gap",
    "Message",
    "MessageTooLargeError",
    "MessagesLost",
    "Subscription",
    "OutcomeUnknown",
    "ProtocolError",
    "RateLimited",
    "RateLimiter",
    "Reaped",
    "ServerInfo",
    "SignatureError",
    "Timeout",
    "UnknownSchemeError",
    "WaitError",
    "WaitTimeout",
    "Signal",
    "Ack",
    "AckResult",
    "BarrierResult",
    "__version__",
    "connect",
    "errors",
]
