"""Name validation, done once in the Rust core.

A name (channel, lock, agent, group, namespace) is 1 to 200 bytes of ASCII
letters, digits and ``_ . : / @ + = # ~ -``, not starting with ``:``, ``/`` or
``.``. Anything else raises :class:`~lockstep.errors.InvalidNameError` naming
the offending character.
"""

from __future__ import annotations

from . import _core
from .errors import InvalidNameError

__all__ = ["MAX_NAME_LEN", "validate_name"]

MAX_NAME_LEN = 200


def validate_name(name: object, *, what: str = "name") -> str:
    """Return ``name`` if valid; raise InvalidNameError otherwise."""
    if not isinstance(name, str):
        raise InvalidNameError(f"invalid {what} name: expected a string, got {type(name).__name__}")
    try:
        _core.validate_name(name, what)
    except UnicodeEncodeError:  # a lone surrogate: not text any backend can store
        raise InvalidNameError(f"invalid {what} name {name[:60]!r}: it is not valid Unicode") from None
    return name
