"""Where the backend URL comes from, and what it says.

The URL is taken from, in order: the ``url`` argument, the ``LOCKSTEP_URL``
environment variable, ``[tool.lockstep]`` in the nearest ``pyproject.toml`` or a
``lockstep.toml`` (``url = "..."``, optionally ``namespace = "..."``), and
finally the embedded default ``file://./.lockstep/coord.db``.

URL grammar (see ``backends/README.md``)::

    memory://[NAME]                      one process; coordinators sharing NAME share state
    file://PATH[?opt=value...]           SQLite; PATH absolute (file:///x.db) or relative
                                         (file://./x.db, relative to the config file's folder
                                         when it came from one, else the working directory)
    redis[s]://[[USER]:PASSWORD@]HOST[:PORT][/DB][?opt=value...]
    redis[s]+streams://...               the same server, messaging over Streams
"""

from __future__ import annotations

import os
import socket
import tomllib
import urllib.parse
import uuid
from pathlib import Path
from typing import Any

import msgspec

from .errors import ConfigError
from .names import validate_name

__all__ = ["DEFAULT_URL", "Settings", "find_config", "load_settings", "parse_url", "redact"]

DEFAULT_URL = "file://./.lockstep/coord.db"
ENV_URL = "LOCKSTEP_URL"
ENV_NAMESPACE = "LOCKSTEP_NAMESPACE"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed backend URL plus the coordinator's identity."""

    url: str  #: as given (may hold a password: print ``display_url`` instead)
    scheme: str
    #: the part after ``scheme://`` without the query: a path, a memory space or host info
    location: str
    query: dict[str, str]  #: raw ``?opt=value`` pairs, checked by the driver's option specs
    options: dict[str, Any] = {}  #: the query, parsed by the driver's specs
    namespace: str = "default"
    member: str = ""
    source: str = "argument"  #: where the URL came from
    base_dir: str = ""  #: folder that relative file paths resolve against

    @property
    def display_url(self) -> str:
        return redact(self.url)


def redact(url: str) -> str:
    """The URL with any password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def parse_url(url: str) -> tuple[str, str, dict[str, str]]:
    """Split ``url`` into scheme, location and query; ConfigError on malformed input."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"the backend URL must be a non-empty string, got {url!r}")
    scheme, sep, rest = url.strip().partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"the backend URL {redact(url)!r} has no scheme; write it as SCHEME://..., "
            f"for example {DEFAULT_URL}"
        )
    location, _, query_text = rest.partition("?")
    query: dict[str, str] = {}
    for name, value in urllib.parse.parse_qsl(query_text, keep_blank_values=True, strict_parsing=False):
        if name in query:
            raise ConfigError(f"option {name!r} is given twice in the backend URL")
        query[name] = value
    return scheme.lower(), location, query


def find_config(start: Path | None = None) -> tuple[dict[str, Any], Path] | None:
    """The nearest ``lockstep.toml`` or ``pyproject.toml`` with ``[tool.lockstep]``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        for name in ("lockstep.toml", "pyproject.toml"):
            path = folder / name
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise ConfigError(f"cannot read {path}: {exc}") from exc
            table = data if name == "lockstep.toml" else data.get("tool", {}).get("lockstep")
            if isinstance(table, dict) and table:
                return table, path
    return None


def default_member() -> str:
    """host:pid:random — unique for every coordinator, readable in `lockstep status`."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def load_settings(
    url: str | None = None, *, namespace: str | None = None, member: str | None = None
) -> Settings:
    """Resolve the URL (argument, env, config file, default) into Settings."""
    source = "argument"
    base_dir = Path.cwd()
    file_namespace: str | None = None
    if url is None:
        env_url = os.environ.get(ENV_URL)
        found = None if env_url else find_config()
        if env_url:
            url, source = env_url, f"${ENV_URL}"
        elif found is not None:
            table, path = found
            allowed = {"url", "namespace"}
            unknown = set(table) - allowed
            if unknown:
                raise ConfigError(
                    f"{path}: unknown lockstep setting(s) {', '.join(sorted(unknown))}; "
                    f"accepted: {', '.join(sorted(allowed))}"
                )
            url = table.get("url", DEFAULT_URL)
            if not isinstance(url, str):
                raise ConfigError(f"{path}: 'url' must be a string, got {url!r}")
            ns_value = table.get("namespace")
            if ns_value is not None and not isinstance(ns_value, str):
                raise ConfigError(f"{path}: 'namespace' must be a string, got {ns_value!r}")
            file_namespace = ns_value
            source, base_dir = str(path), path.parent
        else:
            url, source = DEFAULT_URL, "default"
    scheme, location, query = parse_url(url)
    if namespace is None:
        namespace = os.environ.get(ENV_NAMESPACE) or file_namespace or "default"
    ns = namespace
    validate_name(ns, what="namespace")
    return Settings(
        url=url,
        scheme=scheme,
        location=location,
        query=query,
        namespace=ns,
        member=member or default_member(),
        source=source,
        base_dir=str(base_dir),
    )
