"""What a ``redis[s]://`` URL says: the server's address, the login, and the query options.

``redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB][?option=value...]``; user and
password are percent-decoded. Errors name the part that is wrong and never
repeat the password.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .base import Option, parse_bool, parse_positive_int, parse_seconds

__all__ = ["DEFAULT_PORT", "OPTIONS", "RedisAddress"]

DEFAULT_PORT = 6379


@dataclass(frozen=True)
class RedisAddress:
    """Where the server is and who logs in (the password is kept out of repr)."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    @classmethod
    def parse(cls, location: str, scheme: str) -> RedisAddress:
        """Parse the part of the URL after ``scheme://`` (without the query)."""
        example = f"{scheme}://localhost:{DEFAULT_PORT}/0"
        parts = urllib.parse.urlsplit(f"//{location}")
        hostport = parts.netloc.rpartition("@")[2]  # never quote what comes before: the password
        if not parts.hostname:
            raise ConfigError(
                f"the {scheme} URL has no host; write it as {scheme}://HOST[:PORT][/DB], e.g. {example}"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise ConfigError(
                f"bad port in the {scheme} URL: {hostport!r}; expected HOST:PORT with PORT "
                f"in 1-65535, e.g. {example}"
            )
        path = parts.path.strip("/")
        if path and not (path.isascii() and path.isdigit()):
            raise ConfigError(
                f"bad database {parts.path!r} in the {scheme} URL: expected /N with N a database "
                f"number >= 0, e.g. {example}"
            )
        return cls(
            host=parts.hostname,
            port=port or DEFAULT_PORT,
            db=int(path) if path else 0,
            username=urllib.parse.unquote(parts.username) if parts.username else None,
            password=urllib.parse.unquote(parts.password) if parts.password is not None else None,
        )


def _parse_non_negative_seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"expected 0 or a positive number of seconds, got {text!r}")
    return value


def _parse_existing_file(text: str) -> str:
    path = Path(text).expanduser()
    if not path.is_file():
        raise ValueError(f"no such file: {text!r}")
    return str(path)


def _parse_cert_reqs(text: str) -> str:
    value = text.strip().lower()
    if value not in ("required", "optional", "none"):
        raise ValueError(f"expected required, optional or none, got {text!r}")
    return value


def _parse_client_name(text: str) -> str:
    if not text or any(ch.isspace() for ch in text):
        raise ValueError(f"expected a name without spaces (Redis refuses them), got {text!r}")
    return text


_SPECS = (
    Option(
        "socket_timeout",
        parse_seconds,
        None,
        "seconds one socket read or write may take; unset, each call's deadline governs",
    ),
    Option(
        "connect_timeout",
        parse_seconds,
        None,
        "seconds to open a connection (and to wait for a free one); unset, the call's deadline governs",
    ),
    Option(
        "health_check_interval",
        _parse_non_negative_seconds,
        15.0,
        "PING a pooled connection idle this many seconds before reusing it; 0 turns it off",
    ),
    Option("max_connections", parse_positive_int, 32, "size of the connection pool"),
    Option("client_name", _parse_client_name, None, "CLIENT SETNAME of every connection, see CLIENT LIST"),
    Option("ssl_ca_certs", _parse_existing_file, None, "PEM file of CA certificates to trust (rediss)"),
    Option("ssl_certfile", _parse_existing_file, None, "PEM client certificate for mutual TLS (rediss)"),
    Option("ssl_keyfile", _parse_existing_file, None, "PEM private key of ssl_certfile (rediss)"),
    Option(
        "ssl_cert_reqs",
        _parse_cert_reqs,
        "required",
        "verify the server's certificate: required/optional/none",
    ),
    Option(
        "ssl_check_hostname",
        parse_bool,
        True,
        "check the certificate names the host (off if ssl_cert_reqs=none)",
    ),
)

#: The ``?option=value`` settings of redis URLs, by name.
OPTIONS: dict[str, Option] = {spec.name: spec for spec in _SPECS}
