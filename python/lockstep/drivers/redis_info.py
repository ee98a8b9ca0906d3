"""What a Redis server says about itself (INFO, CONFIG GET), as a ServerInfo with warnings.

``lockstep doctor`` prints this. The warnings are the settings that break
lockstep's promises: no AOF (fences and counters can go backwards after a crash),
an evicting ``maxmemory-policy`` (leases and fences can vanish), a replica
(writes fail).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import ServerInfo
from .redis_url import RedisAddress

__all__ = ["AOF_OFF_WARNING", "describe_server", "pairs", "parse_info", "text_pairs"]

AOF_OFF_WARNING = (
    "appendonly is off: acknowledged writes can be lost on a crash, so fences and counters can "
    "go backwards after a restart; run with appendonly yes (backends/redis.conf)"
)


def describe_server(
    info: Mapping[str, str],
    config: Mapping[str, str] | None,
    *,
    driver: str,
    address: RedisAddress,
    tls: bool,
) -> ServerInfo:
    """Build the ServerInfo from parsed INFO and ``CONFIG GET appendfsync save`` (None: denied)."""
    user = address.username or "default"
    aof = info.get("aof_enabled") == "1"
    fsync = config.get("appendfsync") if config is not None else None
    save = config.get("save") if config is not None else None
    warnings: list[str] = []
    if config is None:
        warnings.append(
            f"CONFIG GET is denied to user {user!r}: the fsync policy and snapshot settings are unknown"
        )
    if aof:
        persistence = f"aof {fsync}" if fsync else "aof (fsync policy unknown)"
        if fsync == "no":
            warnings.append(
                "appendfsync is no: the OS decides when to flush, so a power loss can drop the last "
                "~30 s of acknowledged writes; appendfsync everysec bounds that at ~1 s"
            )
    else:
        if save is None:
            persistence = "rdb only or none (snapshot settings unknown)"
        else:
            persistence = f"rdb only (save {save})" if save else "none"
        warnings.append(AOF_OFF_WARNING)
    policy = info.get("maxmemory_policy", "")
    if policy and policy != "noeviction":
        warnings.append(
            f"maxmemory-policy is {policy}: under memory pressure Redis may evict lockstep's keys "
            "(leases, fences, counters); set maxmemory-policy noeviction (backends/redis.conf)"
        )
    role = info.get("role", "")
    if role and role != "master":
        warnings.append(
            f"this server is a replica (role {role}): writes fail with READONLY; use the primary"
        )
    details: dict[str, Any] = {
        "address": address.where,
        "db": address.db,
        "user": user,
        "tls": tls,
        "run_id": info.get("run_id"),
        "role": role,
        "tcp_port": int(info["tcp_port"]) if info.get("tcp_port", "").isdigit() else None,
        "redis_mode": info.get("redis_mode"),
        "maxmemory_policy": policy,
        "maxmemory": info.get("maxmemory"),
        "aof_enabled": aof,
        "appendfsync": fsync,
        "save": save,
    }
    return ServerInfo(
        driver=driver,
        version=info.get("redis_version", "unknown"),
        persistence=persistence,
        durable=aof,
        warnings=warnings,
        details=details,
    )


def pairs(flat: Sequence[Any] | Mapping[Any, Any] | None) -> list[tuple[Any, Any]]:
    """A flat RESP2 ``[k1, v1, k2, v2, ...]`` reply (or a RESP3 map) as (key, value) pairs."""
    if isinstance(flat, Mapping):
        return list(flat.items())
    items = list(flat or ())
    return list(zip(items[0::2], items[1::2], strict=True))


def text_pairs(flat: Sequence[Any] | Mapping[Any, Any] | None) -> dict[str, str]:
    return {_text(k): _text(v) for k, v in pairs(flat)}


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_info(raw: Any) -> dict[str, str]:
    """INFO's ``key:value`` lines as strings (no type guessing: a run_id stays as written)."""
    out: dict[str, str] = {}
    for line in _text(raw).splitlines():
        if line and not line.startswith("#"):
            name, sep, value = line.partition(":")
            if sep:
                out[name] = value.strip()
    return out
