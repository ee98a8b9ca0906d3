"""The lockstep pytest plugin (entry point ``pytest11``, name ``lockstep``).

Serialize whole test sessions across processes and hosts by a named lock:

    pytest --lockstep-lock tests [--lockstep-url redis://ci:6379/0] [--lockstep-lock-wait 1800]

or in ``pytest.ini`` / ``[tool.pytest.ini_options]``: ``lockstep_lock = "tests"``
(``lockstep_url``, ``lockstep_namespace``, ``lockstep_lock_wait``, ``lockstep_lock_ttl``
likewise; command-line options win). The lock is taken in ``pytest_sessionstart``
(waiting first come, first served, up to the wait; then the run exits with status 75
naming the holder), renewed in a background thread, and released when the session
finishes. Should it be lost meanwhile, the session stops after the running test,
fails (exit status 1, even if every test passed) and says why.

Lease free TCP ports for a test, released at its teardown:

    def test_server(lockstep_port):          # an int, bindable on 127.0.0.1 and 0.0.0.0
        ...
    def test_cluster(lockstep_ports):        # a factory: lockstep_ports(3) -> [p1, p2, p3]
        ...

The ports are unique across every process using the same backend (see
:mod:`lockstep.ports`). The backend URL comes from ``--lockstep-url``, the ini option,
then as in ``lockstep.connect`` (``$LOCKSTEP_URL``, config file, the file driver).

Unused, the plugin costs nothing: no connection, no thread, until a session lock is
asked for or a port fixture is requested. Under pytest-xdist only the controller
process takes the session lock.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .blocking import BlockingCoordinator, BlockingLease

EXIT_BUSY = 75  # as `lockstep lock`: the session lock could not be had within the wait
DEFAULT_WAIT, DEFAULT_TTL = 600.0, 30.0
PORT_TTL, PORT_WAIT = 60.0, 30.0


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("lockstep", "lockstep: session locks and leased ports")
    group.addoption("--lockstep-lock", metavar="NAME",
                    help="hold lock NAME for the whole session (serializes sessions across processes)")  # fmt: skip
    group.addoption("--lockstep-url", metavar="URL", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    group.addoption("--lockstep-namespace", metavar="NS", help="namespace (default: $LOCKSTEP_NAMESPACE, 'default')")
    group.addoption("--lockstep-lock-wait", metavar="SECONDS",
                    help=f"wait this long for the session lock (default {DEFAULT_WAIT:g})")  # fmt: skip
    group.addoption("--lockstep-lock-ttl", metavar="SECONDS", help=f"the session lock's TTL (default {DEFAULT_TTL:g})")
    parser.addini("lockstep_lock", "hold this lock for the whole session (as --lockstep-lock)")
    parser.addini("lockstep_url", "lockstep backend URL (as --lockstep-url)")
    parser.addini("lockstep_namespace", "lockstep namespace (as --lockstep-namespace)")
    parser.addini("lockstep_lock_wait", "seconds to wait for the session lock (as --lockstep-lock-wait)")
    parser.addini("lockstep_lock_ttl", "TTL of the session lock in seconds (as --lockstep-lock-ttl)")


def _setting(config: pytest.Config, name: str) -> str | None:
    """The command-line option, else the ini value, else None."""
    value = config.getoption(name)
    if value is None:
        value = config.getini(name) or None
    return None if value is None else str(value)


def _seconds(config: pytest.Config, name: str, default: float, *, zero_ok: bool) -> float:
    text = _setting(config, name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and (value >= 0 if zero_ok else value > 0)):
        raise pytest.UsageError(f"{name}: expected a {'' if zero_ok else 'positive '}number of seconds, got {text!r}")
    return value


class LockstepState:
    """Per pytest run: the coordinator (made on first use) and the session lock."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self._coord: BlockingCoordinator | None = None
        self.session_lock: BlockingLease | None = None
        self.lost_reason: str | None = None

    def coordinator(self) -> BlockingCoordinator:
        if self._coord is None:
            from .blocking import BlockingCoordinator
            from .errors import ConfigError

            try:
                self._coord = BlockingCoordinator(
                    _setting(self.config, "lockstep_url"), namespace=_setting(self.config, "lockstep_namespace")
                )
            except ConfigError as exc:
                raise pytest.UsageError(f"lockstep: {exc}") from exc
        return self._coord

    def take_session_lock(self, session: pytest.Session, name: str) -> None:
        from .errors import ClaimConflict, LockstepError, LockTimeout

        wait = _seconds(self.config, "lockstep_lock_wait", DEFAULT_WAIT, zero_ok=True)
        ttl = _seconds(self.config, "lockstep_lock_ttl", DEFAULT_TTL, zero_ok=False)
        try:
            self.session_lock = self.coordinator().lock(name, ttl=ttl, wait=wait)
        except (LockTimeout, ClaimConflict) as exc:
            pytest.exit(f"lockstep: session lock: {exc}", returncode=EXIT_BUSY)
        except LockstepError as exc:
            pytest.exit(f"lockstep: session lock {name!r}: {type(exc).__name__}: {exc}",
                        returncode=pytest.ExitCode.INTERNAL_ERROR)  # fmt: skip

        def lost(reason: str) -> None:  # in the coordinator's thread: assignments only
            self.lost_reason = reason
            session.shouldfail = f"lockstep: the session lock {name!r} was lost: {reason}"

        self.session_lock.on_lost(lost)

    def release_session_lock(self) -> None:
        lease, self.session_lock = self.session_lock, None
        if lease is not None and not lease.release() and self.lost_reason is None:
            self.lost_reason = lease.lost_reason() or "it was no longer held when the session ended"

    def close(self) -> None:
        coord, self._coord = self._coord, None
        if coord is not None:
            coord.close()


STATE = pytest.StashKey[LockstepState]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[STATE] = LockstepState(config)  # a plain object: nothing connects yet


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    name = _setting(session.config, "lockstep_lock")
    if name is None or hasattr(session.config, "workerinput"):  # xdist workers: the controller holds it
        return
    session.config.stash[STATE].take_session_lock(session, name)


@pytest.hookimpl(trylast=True)  # after session-scoped fixtures are torn down
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    state.release_session_lock()
    if state.lost_reason is not None and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    reason = config.stash[STATE].lost_reason
    if reason is not None:
        name = _setting(config, "lockstep_lock")
        terminalreporter.write_sep("=", "lockstep: session lock lost", red=True, bold=True)
        terminalreporter.write_line(
            f"the session lock {name!r} was lost: {reason}; tests from then on ran without it, "
            "so the session fails",
            red=True,
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.release_session_lock()  # still held if the session never finished normally
        state.close()


@pytest.fixture
def lockstep_ports(request: pytest.FixtureRequest) -> Iterator[Callable[..., list[int]]]:
    """A factory: ``lockstep_ports(count=1, *, range=(lo, hi))`` leases ``count`` free TCP
    ports for this test (released at its teardown; a lease lost meanwhile is an error)."""
    state = request.config.stash[STATE]
    held: list[BlockingLease] = []

    def lease(count: int = 1, **options: Any) -> list[int]:
        held.append(state.coordinator().ports(count, ttl=PORT_TTL, wait=PORT_WAIT, **options))
        return held[-1].ports

    yield lease
    lost = [f"{lease.ports}: {lease.lost_reason()}" for lease in held if not lease.release()]
    if lost:
        pytest.fail(f"lockstep: port lease(s) lost during the test: {'; '.join(lost)}")


@pytest.fixture
def lockstep_port(lockstep_ports: Callable[..., list[int]]) -> int:
    """A free TCP port leased for this test (see ``lockstep_ports``)."""
    return lockstep_ports(1)[0]
