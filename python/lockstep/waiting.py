"""Waiting for a lease: first come, first served, woken on release, bounded by ``wait``.

One acquire is a loop of attempts with one token. The first attempt that finds the
resources busy puts the token in each resource's FIFO queue on the backend (when
``wait`` > 0); later attempts keep the entry fresh. Between attempts the waiter sleeps
until one of:

* a wake-up: the backend operation that freed a slot names the waiters that can now
  take it, and the driver delivers the news (Redis: a PUBLISH from the release script
  to the waiting coordinator's channel, which for a single-resource waiter already
  carries the grant, a hand-over; SQLite: a datagram to the waiting coordinator's
  socket; memory: an event) — the waiter registers after its first attempt (most are
  granted at once), and the store keeps a wake-up that came before that for it, so a
  release between an attempt and the sleep is not missed;
* ``retry_in``: the backend said when a holder or a waiter ahead expires, i.e. the
  earliest moment things change without anyone releasing (a crashed holder);
* the driver's poll interval, the slow fallback for a lost wake-up (which also
  refreshes the queue entry);
* the end of ``wait``.

An attempt whose reply is lost (Timeout, OutcomeUnknown) may have been granted: the
next attempt, with the same token, returns the same grant, and a waiter that gives up
(its wait ran out, or it was cancelled) releases by token in the background, which
also takes it out of the queues. So no lease is left that the SDK does not know of.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from .drivers.lease_store import QUEUE_TTL, AcquireRequest, Busy, Grant
from .errors import BackendError, BackendUnavailable, ClaimConflict, LockTimeout

if TYPE_CHECKING:
    from .lease_manager import LeaseManager
    from .leases import Lease, LeaseRequest

__all__ = ["acquire_lease"]

MIN_CALL = 0.05  # s: the shortest deadline an attempt is given
LAST_CALL = 0.01  # s: no new attempt starts with less time than this left
ERROR_BACKOFF = 0.05  # s: pause after an attempt that got no answer
GIVE_UP_GRACE = 0.03  # s a timed-out waiter waits for its own release before raising


async def acquire_lease(manager: LeaseManager, request: LeaseRequest) -> Lease:
    """Acquire what ``request`` asks for within its ``wait`` seconds or raise LockTimeout (one
    name) / ClaimConflict (several, or any number with ``claim_errors``)."""
    kind, names, slots, ttl, wait = request.kind, request.names, request.slots, request.ttl, request.wait
    owner, claim_errors = request.owner, request.claim_errors
    coord = manager.coord
    store = manager.store
    token = manager.new_token()
    started = time.monotonic()
    deadline = started + wait
    floors = manager.floors(kind, names)
    queue = wait > 0
    req = AcquireRequest(
        token, coord.member if owner is None else owner, kind, names, slots, ttl, QUEUE_TTL if queue else None, floors
    )
    last_busy: Busy | None = None
    last_error: BackendError | None = None
    maybe_granted = False  # an attempt got no reply: it may hold the lease on the backend
    in_line_since = started
    attempt = 0
    registered = False
    manager.waiting.add(token)
    try:
        while True:
            if manager.closed:
                raise BackendUnavailable(f"the coordinator was closed while waiting for {kind} {names[0]!r}")
            left = deadline - time.monotonic()
            if attempt > 0 and left < LAST_CALL:
                break
            # Every attempt ends by the deadline (the first gets at least MIN_CALL).
            call_timeout = coord.timeout if not queue else min(coord.timeout, max(left, MIN_CALL))
            sent_at = time.monotonic()
            try:
                outcome: Grant | Busy | None = await store.acquire(req, timeout=call_timeout)
                if isinstance(outcome, Busy):
                    in_line_since = sent_at  # the queue entry was (re)set after this moment
            except BackendError as exc:
                last_error, maybe_granted = exc, True
                outcome = None
            if isinstance(outcome, Grant):
                return manager.adopt(token, kind, names, outcome, ttl, sent_at, floors)
            if not registered:
                # Only now, so an acquire granted at once (the common case) does none of
                # this. A wake-up that came before is kept by the store for register().
                registered = True
                store.register(token)
                if queue:  # optional (waiters poll anyway): never let it eat most of the wait
                    await store.prepare_wait(timeout=min(coord.timeout, max(0.0, deadline - time.monotonic()) / 4))
            # Refresh the queue entry at least every ttl/3: a lease handed over to us counts
            # its deadline from our last attempt, and must have most of its ttl left.
            sleep = min(store.poll_interval(attempt), ttl / 3)
            if isinstance(outcome, Busy):
                last_busy, last_error = outcome, None
                if outcome.retry_in is not None:
                    sleep = min(sleep, outcome.retry_in + 0.001)
            else:
                sleep = min(sleep, ERROR_BACKOFF)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            await store.wait(token, min(sleep, left))
            fence = store.handed_over(token)
            first_ttl = min(ttl, QUEUE_TTL)
            if fence is not None and in_line_since + first_ttl - time.monotonic() > first_ttl / 2:
                # Granted by the release itself; it lives as long as our queue entry, which
                # our last attempt refreshed. (Too little of it left: the next attempt, same
                # token, returns the same grant with a fresh expiry.)
                return manager.adopt(token, kind, names, Grant((fence,)), ttl, in_line_since, floors, first_ttl)
            attempt += 1
    except BaseException:
        # Cancelled, or the grant was refused (DataLossDetected): the backend may know the token.
        _give_up(manager, token, kind, names, ttl)
        raise
    finally:
        if registered:
            store.unregister(token)
        manager.waiting.discard(token)
    if queue or maybe_granted:
        # Usually done in a millisecond, so the queue is clean when the error is raised;
        # a backend that does not answer gets only GIVE_UP_GRACE of the caller's time.
        await asyncio.wait({_give_up(manager, token, kind, names, ttl)}, timeout=GIVE_UP_GRACE)
    raise _timeout_error(names, wait, last_busy, last_error, claim_errors) from last_error


def _give_up(
    manager: LeaseManager, token: str, kind: str, names: tuple[str, ...], ttl: float
) -> asyncio.Task[bool]:
    """Stop waiting: release by token in the background (which also leaves the queues)."""
    return manager.spawn(manager._release_by_token(token, kind, names, time.monotonic() + ttl))


def _timeout_error(
    names: tuple[str, ...], wait: float, busy: Busy | None, error: BackendError | None, claim_errors: bool = False
) -> Exception:
    if len(names) > 1 or claim_errors:
        if busy is not None:
            return ClaimConflict(busy.conflicts(), waited=wait)
        return ClaimConflict({n: "(unknown: the backend did not answer)" for n in names}, waited=wait)
    holders: tuple[str, ...] = ()
    detail = ""
    if busy is not None and busy.blockers:
        holders = busy.blockers[0].holders
        if not holders and busy.blockers[0].waiting_ahead:
            detail = f"free, but {', '.join(busy.blockers[0].waiting_ahead)} waited longer"
    elif error is not None:
        detail = f"the backend did not answer: {error}"
    return LockTimeout(names[0], holders, wait, detail)
