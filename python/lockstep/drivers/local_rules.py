"""Redis's rules for keys, values, TTLs and counters, shared by the local drivers.

The memory and SQLite drivers emulate Redis, so that a primitive behaves the
same on every backend. These helpers check arguments and refuse exactly where
Redis refuses (WRONGTYPE, INCR on a non-integer, int64 overflow).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from ..errors import BackendError, InvalidInputError

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_REDIS_INTEGER = re.compile(rb"0|-?[1-9][0-9]{0,19}")  # what Redis's string2ll accepts


def wrong_type(driver: str, op: str, key: str, holds: str) -> BackendError:
    """Redis's WRONGTYPE refusal, naming the key and what it holds."""
    return BackendError(
        f"{driver}: WRONGTYPE {op} against key {key!r}, which holds a {holds}; "
        "Operation against a key holding the wrong kind of value"
    )


def _is_text(text: Any) -> bool:
    """A str that SQLite (UTF-8) and Redis clients can store: no lone surrogates."""
    if not isinstance(text, str):
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_key(key: Any) -> str:
    if key and _is_text(key):
        return str(key)
    raise InvalidInputError(f"a key must be a non-empty str of valid Unicode, got {key!r}")


def check_keys(keys: Any) -> list[str]:
    return [check_key(k) for k in keys]


def check_field(key: str, name: Any) -> str:
    if _is_text(name):
        return str(name)
    raise InvalidInputError(f"hash field names of key {key!r} must be str of valid Unicode, got {name!r}")


def check_value(key: str, value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidInputError(f"the value for key {key!r} must be bytes, got {type(value).__name__}")


def check_fields(key: str, mapping: Mapping[str, Any]) -> dict[str, bytes]:
    return {check_field(key, name): check_value(f"{key}[{name}]", value) for name, value in mapping.items()}


def check_ttl(key: str, ttl: Any) -> float:
    """A TTL in positive, finite seconds (Redis itself refuses SET PX 0; PEXPIRE 0 would delete)."""
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (math.isfinite(ttl) and ttl > 0):
        raise InvalidInputError(f"the ttl for key {key!r} must be a positive number of seconds, got {ttl!r}")
    return float(ttl)


def check_amount(key: str, amount: Any) -> int:
    if isinstance(amount, bool) or not isinstance(amount, int) or not INT64_MIN <= amount <= INT64_MAX:
        raise InvalidInputError(f"incr of key {key!r}: the amount must be a 64-bit int, got {amount!r}")
    return amount


def add_to_counter(driver: str, key: str, current: bytes | None, amount: int) -> int:
    """The new value of an INCRBY, refused exactly where Redis refuses it."""
    if current is None:
        base = 0
    elif _REDIS_INTEGER.fullmatch(current) and INT64_MIN <= int(current) <= INT64_MAX:
        base = int(current)
    else:
        raise BackendError(
            f"{driver}: incr on key {key!r}: its value ({len(current)} bytes) is not an integer "
            "or out of range"
        )
    total = base + amount
    if not INT64_MIN <= total <= INT64_MAX:
        raise BackendError(f"{driver}: incr on key {key!r}: increment or decrement would overflow")
    return total
