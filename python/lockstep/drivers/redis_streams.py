"""The Redis driver with messaging over Streams: ``redis+streams://`` and ``rediss+streams://``.

The same server, URL grammar, options and key/value plumbing as
:class:`~lockstep.drivers.redis.RedisDriver`. It declares the same capabilities
for now: durable messaging (consumer groups, ack, redelivery) over Streams
arrives with the messaging primitives, and the capability with it.
"""

from __future__ import annotations

from .redis import RedisDriver

__all__ = ["RedisStreamsDriver"]


class RedisStreamsDriver(RedisDriver):
    """``redis+streams://``; ``rediss+streams://`` turns TLS on (the scheme starts with rediss)."""

    schemes = ("redis+streams", "rediss+streams")
