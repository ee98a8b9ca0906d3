"""A real ``redis-server`` for the test suite, on a free loopback port, in a temp dir.

Each :class:`RedisServer` writes its own config file and runs Debian's
``redis-server`` as a child process, in the persistence mode a test asks for:

* ``appendonly="everysec"`` / ``"always"``: AOF on with that fsync policy, no RDB
  snapshots (what ``backends/redis.conf`` tells users to run);
* ``appendonly="no"``: RDB snapshots only (``save 1 1``), Debian's default style,
  so the restart scenario can show acknowledged writes going missing.

It can be killed (SIGKILL), paused (SIGSTOP) and restarted on the same port and
directory, for the chaos scenarios. A missing ``redis-server`` is an error, never
a skip.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .tls import TlsFiles, make_tls_files

__all__ = ["RedisServer", "free_port"]

Appendonly = Literal["everysec", "always", "no"]
START_DEADLINE = 10.0
_MAX_START_ATTEMPTS = 5


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on right now (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent_prefix() -> list[str]:
    """A command prefix that makes Linux SIGKILL the server if the test process dies.

    ``setpriv --pdeathsig`` (util-linux) sets it in the child before exec, with no
    Python code between fork and exec (``preexec_fn`` is unsafe with the fault
    proxy's threads running). The signal follows the exit of the *thread* that
    started the server, so it is only used from the main thread.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is None or threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", "KILL", "--"]


class RedisServer:
    """One redis-server process with its config, data and log in ``directory``."""

    host = "127.0.0.1"

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: Appendonly = "everysec",
        password: str | None = None,
        acl_users: dict[str, str] | None = None,
        tls: bool = False,
        extra: dict[str, str] | None = None,
    ) -> None:
        if appendonly not in ("everysec", "always", "no"):
            raise ValueError(f"appendonly must be 'everysec', 'always' or 'no', got {appendonly!r}")
        if password is not None and acl_users:
            raise ValueError("give password or acl_users, not both: acl_users disables the default user")
        for secret in [password or "", *(acl_users or {}), *(acl_users or {}).values()]:
            if any(ch.isspace() or ch in "\"'" for ch in secret):
                raise ValueError("test user names and passwords must not hold spaces or quotes")
        self.directory = Path(directory)
        self.appendonly = appendonly
        self.password = password
        self.acl_users = dict(acl_users or {})
        self.tls_enabled = tls
        self.extra = dict(extra or {})
        self.port = 0
        self.tls_port: int | None = None
        self.tls: TlsFiles | None = None
        self.conf_path = self.directory / "redis.conf"
        self.log_path = self.directory / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- config ----------------------------------------------------------------------
    def _config_lines(self) -> list[str]:
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            "protected-mode yes",
            "daemonize no",
            f'dir "{self.directory}"',
            f'logfile "{self.log_path}"',
            "dbfilename dump.rdb",
            "appendfilename appendonly.aof",
        ]
        if self.appendonly == "no":
            # RDB only: a snapshot at most every second, so "acknowledged but lost" is real.
            lines += ["appendonly no", "save 1 1"]
        else:
            lines += ["appendonly yes", f"appendfsync {self.appendonly}", 'save ""']
        if self.password is not None:
            lines.append(f"requirepass {self.password}")
        if self.acl_users:
            lines.append("user default off")
            lines += [f"user {name} on >{pw} ~* &* +@all" for name, pw in self.acl_users.items()]
        if self.tls is not None:
            lines += [
                f"tls-port {self.tls_port}",
                f'tls-cert-file "{self.tls.server_cert}"',
                f'tls-key-file "{self.tls.server_key}"',
                f'tls-ca-cert-file "{self.tls.ca_cert}"',
                "tls-auth-clients no",
            ]
        lines += [f"{name} {value}" for name, value in self.extra.items()]
        return lines

    def _write_config(self) -> None:
        self.conf_path.write_text("\n".join(self._config_lines()) + "\n")

    # -- credentials -----------------------------------------------------------------
    @property
    def username(self) -> str | None:
        """The user a default client logs in as (the first ACL user, if any)."""
        return next(iter(self.acl_users), None)

    def _credentials(self) -> tuple[str | None, str | None]:
        user = self.username
        if user is not None:
            return user, self.acl_users[user]
        return None, self.password

    # -- lifecycle -------------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> RedisServer:
        """Start on free ports (retrying when another process takes one first)."""
        if self.running:
            raise RuntimeError(f"redis-server is already running on port {self.port}")
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.tls_enabled and self.tls is None:
            self.tls = make_tls_files(self.directory / "tls")
        for attempt in range(_MAX_START_ATTEMPTS):
            self.port = free_port(self.host)
            self.tls_port = free_port(self.host) if self.tls_enabled else None
            try:
                self._launch()
                return self
            except _PortTaken:
                if attempt == _MAX_START_ATTEMPTS - 1:
                    raise RuntimeError(
                        f"redis-server found its port taken {_MAX_START_ATTEMPTS} times; "
                        f"log tail:\n{self.log_tail()}"
                    ) from None
        raise AssertionError("unreachable")

    def restart(self) -> RedisServer:
        """Start again on the same ports and directory (after kill() or stop()).

        A running server is shut down gracefully first (``SHUTDOWN``, which saves per
        its persistence config); use :meth:`kill` first to simulate a crash.
        """
        if self.running:
            self._shutdown(nosave=False)
        try:
            self._launch()
        except _PortTaken:
            raise RuntimeError(f"cannot restart: port {self.port} was taken meanwhile") from None
        return self

    def _launch(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not on PATH: install Debian's redis-server package "
                "(`apt-get install redis-server`); the tests never skip for it"
            )
        self._write_config()
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._process = subprocess.Popen(
            [*_die_with_parent_prefix(), binary, str(self.conf_path)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._paused = False
        self._wait_until_ready(log_offset)

    def _wait_until_ready(self, log_offset: int) -> None:
        deadline = time.monotonic() + START_DEADLINE
        while True:
            assert self._process is not None
            if self._process.poll() is not None:
                new_log = self._read_log(log_offset)
                self._process = None
                if "Address already in use" in new_log:
                    raise _PortTaken
                raise RuntimeError(f"redis-server exited at start; log tail:\n{_tail(new_log)}")
            try:
                with self.client(socket_timeout=0.5) as probe:
                    if probe.ping():
                        return
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # not listening yet, or still loading its dataset (BusyLoadingError)
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"redis-server on port {self.port} did not answer PING within "
                    f"{START_DEADLINE:g} s; log tail:\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _shutdown(self, *, nosave: bool) -> None:
        process = self._process
        if process is None:
            return
        if self._paused:
            self.resume()
        if process.poll() is None:
            with contextlib.suppress(redis.RedisError, OSError), self.client(socket_timeout=2) as c:
                c.shutdown(nosave=nosave)  # plain SHUTDOWN saves per the config
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self._process = None

    def stop(self) -> None:
        """SHUTDOWN NOSAVE, then terminate or kill if it lingers. Idempotent."""
        self._shutdown(nosave=True)

    def kill(self) -> None:
        """SIGKILL: a crash, losing whatever was not yet persisted."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(timeout=5)
        self._process = None
        self._paused = False

    def pause(self) -> None:
        """SIGSTOP: the server stops answering but keeps its connections open."""
        if not self.running:
            raise RuntimeError("redis-server is not running")
        os.kill(self.pid, signal.SIGSTOP)  # type: ignore[arg-type]
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        if self._process is not None:
            os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- talking to it ---------------------------------------------------------------
    def url(
        self,
        scheme: str = "redis",
        user: str | None = None,
        password: str | None = None,
        db: int = 0,
        *,
        port: int | None = None,
        **query: Any,
    ) -> str:
        """A lockstep URL for this server; credentials default to the server's own.

        ``rediss`` schemes point at the TLS port and add ``ssl_ca_certs`` unless given.
        ``port`` overrides the port (to go through a FaultProxy, say).
        """
        tls = scheme.startswith("rediss")
        if tls and self.tls is None:
            raise ValueError(f"scheme {scheme!r} needs RedisServer(tls=True)")
        default_user, default_password = self._credentials()
        if user is None and password is None:
            user, password = default_user, default_password
        auth = ""
        if password is not None:
            auth = f"{urllib.parse.quote(user or '', safe='')}:{urllib.parse.quote(password, safe='')}@"
        elif user is not None:
            auth = f"{urllib.parse.quote(user, safe='')}@"
        if port is None:
            port = self.tls_port if tls else self.port
        if tls and "ssl_ca_certs" not in query:
            assert self.tls is not None
            query["ssl_ca_certs"] = str(self.tls.ca_cert)
        text = f"{scheme}://{auth}{self.host}:{port}/{db}"
        if query:
            text += "?" + urllib.parse.urlencode({k: str(v) for k, v in query.items()})
        return text

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync client on the plain port, logged in, for assertions in tests."""
        user, password = self._credentials()
        options: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "username": user,
            "password": password,
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            # no silent retries: a test asserts what one command did (and SHUTDOWN returns at once)
            "retry": Retry(NoBackoff(), 0),
        }
        options.update(kwargs)
        return redis.Redis(**options)

    @property
    def run_id(self) -> str:
        """The server's run_id (it changes on every start)."""
        with self.client() as c:
            return str(c.info("server")["run_id"])

    def _read_log(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(offset)
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 20) -> str:
        return _tail(self._read_log(), lines)

    def __repr__(self) -> str:
        state = "paused" if self._paused else ("running" if self.running else "stopped")
        return f"<RedisServer {self.host}:{self.port} appendonly={self.appendonly} {state}>"


class _PortTaken(Exception):
    """redis-server could not bind: another process took the port we picked."""


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.splitlines()[-lines:])
