"""The Redis driver with messaging over Streams: ``redis+streams://`` and ``rediss+streams://``.

The same server, URL grammar, options and key/value plumbing as
:class:`~lockstep.drivers.redis.RedisDriver`; messaging goes through a stream per
channel instead of pub/sub, so it adds durable messaging: consumer groups, acks,
redelivery, dead letters and replay (see :mod:`.redis_streams_messages`).
"""

from __future__ import annotations

from typing import Any

from ..keys import Keyspace
from .base import Capability
from .redis import RedisDriver

__all__ = ["RedisStreamsDriver"]


class RedisStreamsDriver(RedisDriver):
    """``redis+streams://``; ``rediss+streams://`` turns TLS on (the scheme starts with rediss)."""

    schemes = ("redis+streams", "rediss+streams")
    capabilities = RedisDriver.capabilities | {Capability.DURABLE_MESSAGES}

    def message_store(self, keys: Keyspace) -> Any:
        from .redis_streams_messages import RedisStreamsStore

        return RedisStreamsStore(self, keys)
