"""The key layout: every key lockstep writes, built in one place.

    ls:{NAMESPACE}:KIND:{NAME}[:PART...]

The resource part ``{KIND:NAME}`` is a Redis Cluster hash tag, so all keys of one
resource (a lock's owner and fence, a stream and its dead letters) share a slot
and multi-key scripts never fail with CROSSSLOT. Names are validated by the Rust
core (no braces, no glob characters), so a name can never break the layout.
"""

from __future__ import annotations

from .names import validate_name

__all__ = ["Keyspace", "meta_of"]


class Keyspace:
    """Builds namespaced keys for one coordinator."""

    __slots__ = ("namespace", "prefix")

    def __init__(self, namespace: str) -> None:
        self.namespace = validate_name(namespace, what="namespace")
        self.prefix = f"ls:{namespace}:"

    def key(self, kind: str, name: str, *parts: str) -> str:
        """The key of one resource; ``kind`` is lockstep's own ("lock", "agent", ...)."""
        validate_name(name, what=kind)
        tail = "".join(f":{p}" for p in parts)
        return f"{self.prefix}{{{kind}:{name}}}{tail}"

    def kind_prefix(self, kind: str) -> str:
        """What every key of ``kind`` in this namespace starts with: ``ls:NS:{KIND:``."""
        return f"{self.prefix}{{{kind}:"

    def meta(self, *parts: str) -> str:
        """A namespace-wide key (indexes, schema version) with its own hash tag."""
        return f"{self.prefix}{{meta}}:" + ":".join(parts)


def meta_of(key: str, *parts: str) -> str:
    """:meth:`Keyspace.meta` of the namespace ``key`` (any key built here) is in: a namespace
    name has no brace, so the prefix ends where the first hash tag starts."""
    return f"{key[: key.index('{')]}{{meta}}:" + ":".join(parts)
