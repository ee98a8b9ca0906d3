"""``lockstep status`` and ``lockstep sweep``: what is registered, and cleaning up after the dead.

    lockstep status [URL] [--namespace NS] [--watch [SECONDS]]
    lockstep sweep  [URL] [--namespace NS] [--threshold SECONDS]
    lockstep sweep  [URL] [--namespace NS] --reset [--yes]

``status`` prints the namespace's agents (alive or not, with their local process),
the leases they own with each resource's current holders, the backend's memory and
the latest reapings, as tables; ``--watch`` redraws them in place every SECONDS
(default 2) until Ctrl-C.

``sweep`` reaps dead agents now (what ``coord.sweep()`` does) and prints what it
reaped and freed. ``--reset`` is the seed's "nuclear option" made safe: within ONE
namespace (never ``FLUSHDB``, never a scan of the keyspace) it removes every agent
record, alive or not, every key those agents own per their ownership indexes, their
leases (released by token), the namespace's membership indexes and its lifecycle log.
It keeps the incarnation counter (one small key), so a returning agent never reuses
an incarnation; agents still running get ``Reaped`` at their next heartbeat. Keys of
other primitives that no agent owns (locks held outside an agent, message logs, rate
limit counters) are not in these indexes and are left alone: they expire by their
TTLs. It asks for confirmation; ``--yes`` skips the question, and without a terminal
it refuses unless ``--yes`` is given.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from .coordinator import Coordinator, connect
from .drivers.base import Capability
from .errors import LockstepError
from .membership import MemberInfo
from .reaping import SweepReport, reset

__all__ = ["add_parsers", "run"]

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
RECENT = 5  # lifecycle entries shown


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("status", help="agents, their leases, memory and recent reapings, as tables")
    s.add_argument("url", nargs="?", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    s.add_argument("--namespace", help="namespace (default: $LOCKSTEP_NAMESPACE, config, 'default')")
    s.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SECONDS",
                   help="redraw every SECONDS (default 2) until Ctrl-C; give the URL first")  # fmt: skip
    w = sub.add_parser("sweep", help="reap dead agents now and print what was freed")
    w.add_argument("url", nargs="?", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    w.add_argument("--namespace", help="namespace (default: $LOCKSTEP_NAMESPACE, config, 'default')")
    w.add_argument("--threshold", type=float, metavar="SECONDS",
                   help="reap agents silent longer than this (default: each agent's own ttl)")  # fmt: skip
    w.add_argument("--reset", action="store_true",
                   help="remove EVERY agent of the namespace and what they own (asks first)")  # fmt: skip
    w.add_argument("--yes", action="store_true", help="with --reset: do not ask")


def run(args: argparse.Namespace) -> int:
    from .cli import EXIT_BROKEN, EXIT_OK

    if args.command == "status":
        if args.watch is not None and not args.watch > 0:
            print("lockstep: --watch needs a positive number of seconds", file=sys.stderr)
            return EXIT_BROKEN
        try:
            return asyncio.run(_status(args))
        except KeyboardInterrupt:
            return EXIT_OK  # --watch ends with Ctrl-C
    if args.reset:
        return asyncio.run(_reset(args))
    return asyncio.run(_sweep(args))


# -- status ---------------------------------------------------------------------------------
async def _status(args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    async with connect(args.url, namespace=args.namespace) as coord:
        while True:
            text = await render_status(coord)
            if args.watch is None:
                print(text)
                return EXIT_OK
            print(CLEAR + text + f"\n\n(every {args.watch:g} s; Ctrl-C to stop)", flush=True)
            await asyncio.sleep(args.watch)


async def render_status(coord: Coordinator) -> str:
    from .cli import table

    store = coord._membership_manager().store
    members = await coord.members()
    out = [
        f"lockstep status  {coord.settings.display_url}  namespace {coord.namespace!r}  "
        f"({coord.driver.name} driver, heartbeats on the {store.clock} clock)  {time.strftime('%H:%M:%S')}",
        "",
        f"agents ({len(members)}, {sum(m.alive for m in members)} alive)",
        table(["agent", "inc", "state", "last beat", "ttl", "host", "pid", "process", "keys", "leases", "meta"],
              [_agent_row(m) for m in members]),  # fmt: skip
    ]
    out += ["", *await _lease_lines(coord, members)]
    usage = await coord.memory_usage()
    out += [
        "",
        "memory",
        table(["backend", "namespace", "keys", "how"],
              [[human_bytes(usage.backend_bytes), human_bytes(usage.namespace_bytes), str(usage.keys),
                str(usage.detail.get("how", ""))]]),  # fmt: skip
    ]
    recent = [json.loads(e) for e in await store.lifecycle(RECENT, timeout=coord.timeout)]
    out += ["", f"latest reapings ({len(recent)})"]
    if recent:
        out.append(table(["when", "agent", "inc", "reason", "keys", "leases", "reaper"],
                         [[time.strftime("%H:%M:%S", time.localtime(e.get("at", 0))), str(e.get("agent")),
                           str(e.get("incarnation")), str(e.get("reason")), str(e.get("keys_deleted")),
                           str(e.get("leases")), str(e.get("reaper"))] for e in recent]))  # fmt: skip
    out.append("(queues: not shown by this version of `lockstep status`)")
    return "\n".join(out)


def _agent_row(m: MemberInfo) -> list[str]:
    state = "alive" if m.alive else ("process gone" if m.process_alive is False else "silent")
    process = {True: "running", False: "gone", None: "-" if not m.local else "unknown"}[m.process_alive]
    meta = json.dumps(m.meta, separators=(",", ":")) if m.meta else ""
    return [m.agent_id, str(m.incarnation), state, f"{m.age:.1f} s ago", f"{m.ttl:g} s", m.host, str(m.pid),
            process, str(m.owned_keys), str(m.owned_leases), meta[:40]]  # fmt: skip


async def _lease_lines(coord: Coordinator, members: list[MemberInfo]) -> list[str]:
    from .cli import table

    owning = [m for m in members if m.owned_leases]
    if Capability.LOCKS not in coord.capabilities:
        return [f"leases: the {coord.driver.name} driver has no leases"]
    store = coord._membership_manager().store
    rows = []
    for m in owning:
        for lease in await store.leases(m.agent_id, timeout=coord.timeout):
            for name in lease.names:
                holders = await coord.lease_holders(name, kind=lease.kind)
                who = ", ".join(f"{h.owner} (fence {h.fence}, {h.expires_in:.0f} s left)" for h in holders) or "free"
                rows.append([f"{lease.kind}:{name}", m.agent_id, who])
    title = f"leases owned by agents ({len(rows)}; leases taken outside an agent are not listed)"
    return [title, table(["resource", "owner agent", "holders now"], rows)]


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# -- sweep ----------------------------------------------------------------------------------
async def _sweep(args: argparse.Namespace) -> int:
    from .cli import EXIT_OK

    async with connect(args.url, namespace=args.namespace) as coord:
        report = await coord.sweep(threshold=args.threshold)
        print(f"lockstep sweep  {coord.settings.display_url}  namespace {coord.namespace!r}")
        print(render_report(report))
    return EXIT_OK


def render_report(report: SweepReport) -> str:
    from .cli import table

    if not report.reaped:
        return "nothing to reap: every registered agent is alive"
    out = [
        f"reaped {len(report.reaped)} agent(s)",
        table(["agent", "inc", "reason", "silent for", "keys deleted", "leases"],
              [[r.agent_id, str(r.incarnation), r.reason, "-" if r.age is None else f"{r.age:.1f} s",
                str(r.keys_deleted), ", ".join(r.leases)] for r in report.reaped]),  # fmt: skip
        f"keys deleted: {report.keys_deleted}",
        f"leases freed: {', '.join(report.leases_freed) or 'none'}",
    ]
    if report.leases_left:
        out.append(f"leases left to their TTL: {'; '.join(report.leases_left)}")
    if report.announce_note:
        out.append(f"announced: {report.announce_note}")
    out += [f"warning: {e}" for e in report.errors]
    return "\n".join(out)


async def _reset(args: argparse.Namespace) -> int:
    from .cli import EXIT_BROKEN, EXIT_OK

    coord = connect(args.url, namespace=args.namespace)
    where = f"namespace {coord.namespace!r} at {coord.settings.display_url}"
    if not args.yes:
        if not sys.stdin.isatty():
            print(f"lockstep: refusing to reset {where} without a terminal to confirm on; add --yes", file=sys.stderr)
            return EXIT_BROKEN
        async with coord:
            count = len(await coord.members())
        answer = input(
            f"Reset {where}: remove all {count} agent(s), alive ones too, the keys they own, their leases, "
            f"and the namespace's membership indexes and lifecycle log? Type the namespace name to confirm: "
        )
        if answer.strip() != coord.namespace:
            print("lockstep: not confirmed; nothing was changed", file=sys.stderr)
            return EXIT_BROKEN
        coord = connect(args.url, namespace=args.namespace)
    async with coord:
        try:
            report, dropped = await reset(coord, timeout=coord.timeout)
        except LockstepError as exc:
            print(f"lockstep: reset of {where} stopped part way: {exc}; run it again to finish", file=sys.stderr)
            return EXIT_BROKEN
    print(f"lockstep sweep --reset  {where}")
    print(render_report(report) if report.reaped else "no agents were registered")
    print(f"membership indexes and lifecycle log removed ({dropped} key(s) or row(s)); incarnation counter kept")
    return EXIT_OK
