"""``lockstep status`` and ``lockstep sweep``: what is registered, and cleaning up after the dead.

    lockstep status [URL] [--namespace NS] [--watch [SECONDS]] [--json]
    lockstep sweep  [URL] [--namespace NS] [--threshold SECONDS]
    lockstep sweep  [URL] [--namespace NS] --reset [--yes]

``status`` prints the namespace's agents (alive or not, with their local process),
every lease resource someone holds or waits for (holder, the agent owning the lease,
fence, time left on the backend's clock, the queue in order), the consumer groups of
its channels with their pending entries, its signal logs (target, name, newest
generation, when it was sent), the backend's memory and the latest reapings,
as tables (gathered by :mod:`lockstep.status_report`, from indexes, never a keyspace
scan); ``--watch`` redraws them in place every SECONDS (default 2) until Ctrl-C.
``--json`` prints the same as one JSON object (with ``--watch``: one per line, per refresh).

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
from .errors import LockstepError
from .reaping import SweepReport, reset
from .status_report import collect

__all__ = ["add_parsers", "run"]

CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear screen
KINDS = {"sem": "semaphore"}  # lease kinds as people say them


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("status", help="agents, leases and their holders, queues, memory, as tables")
    s.add_argument("url", nargs="?", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    s.add_argument("--namespace", help="namespace (default: $LOCKSTEP_NAMESPACE, config, 'default')")
    s.add_argument("--watch", nargs="?", type=float, const=2.0, metavar="SECONDS",
                   help="redraw every SECONDS (default 2) until Ctrl-C; give the URL first")  # fmt: skip
    s.add_argument("--json", action="store_true", help="print one JSON object (per refresh with --watch)")
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
            if args.json:
                print(json.dumps(await collect(coord), separators=(",", ":")), flush=True)
            else:
                text = await render_status(coord)
                if args.watch is None:
                    print(text)
                else:
                    print(CLEAR + text + f"\n\n(every {args.watch:g} s; Ctrl-C to stop)", flush=True)
            if args.watch is None:
                return EXIT_OK
            await asyncio.sleep(args.watch)


async def render_status(coord: Coordinator) -> str:
    """The tables of ``lockstep status`` (see the module docstring)."""
    from .cli import table

    report = await collect(coord)
    agents = report["agents"]
    out = [
        f"lockstep status  {report['url']}  namespace {report['namespace']!r}  ({report['driver']} driver, "
        + f"heartbeats on the {report['clock']} clock)  {time.strftime('%H:%M:%S', time.localtime(report['at']))}",
        "",
        f"agents ({len(agents)}, {sum(a['alive'] for a in agents)} alive)",
        table(["agent", "inc", "state", "last beat", "ttl", "host", "pid", "process", "keys", "leases", "meta"],
              [_agent_row(a) for a in agents]),  # fmt: skip
        "",
    ]
    if report["leases"] is None:
        out.append(f"leases: {report['notes']['leases']}")
    else:
        held = sum(len(r["holders"]) for r in report["leases"])
        waiting = sum(len(r["waiters"]) for r in report["leases"])
        out += [
            f"leases ({len(report['leases'])} resource(s), {held} held, {waiting} waiting)",
            table(["resource", "kind", "holder", "fence", "expires in", "waiters"],
                  [row for r in report["leases"] for row in _lease_rows(r)]),  # fmt: skip
        ]
    out.append("")
    if report["queues"] is None:
        out.append(f"queues: {report['notes']['queues']}")
    else:
        out += [
            f"queues: consumer groups ({len(report['queues'])}, "
            + f"{sum(q['pending'] for q in report['queues'])} entries pending)",
            table(["channel", "group", "consumers", "pending", "not yet delivered"],
                  [[q["channel"], q["group"], str(q["consumers"]), str(q["pending"]),
                    "?" if q["lag"] is None else str(q["lag"])] for q in report["queues"]]),  # fmt: skip
        ]
    out.append("")
    if report["signals"] is None:
        out.append(f"signals: {report['notes']['signals']}")
    else:
        out += [
            f"signal logs ({len(report['signals'])})",
            table(["target", "signal", "generation", "retained", "last sent"],
                  [[s["target"], s["name"], str(s["last"]), str(s["last"] - s["first"] + 1),
                    "-" if s["ts"] is None else time.strftime("%H:%M:%S", time.localtime(s["ts"]))]
                   for s in report["signals"]]),  # fmt: skip
        ]
    memory, recent = report["memory"], report["reapings"]
    out += [
        "",
        "memory",
        table(["backend", "namespace", "keys", "how"],
              [[human_bytes(memory["backend_bytes"]), human_bytes(memory["namespace_bytes"]), str(memory["keys"]),
                memory["how"]]]),  # fmt: skip
        "",
        f"latest reapings ({len(recent)})",
    ]
    if recent:
        out.append(table(["when", "agent", "inc", "reason", "keys", "leases", "reaper"],
                         [[time.strftime("%H:%M:%S", time.localtime(e.get("at", 0))), str(e.get("agent")),
                           str(e.get("incarnation")), str(e.get("reason")), str(e.get("keys_deleted")),
                           str(e.get("leases")), str(e.get("reaper"))] for e in recent]))  # fmt: skip
    return "\n".join(out)


def _agent_row(a: dict[str, Any]) -> list[str]:
    meta = json.dumps(a["meta"], separators=(",", ":")) if a["meta"] else ""
    return [a["agent"], str(a["incarnation"]), a["state"], f"{a['age']:.1f} s ago", f"{a['ttl']:g} s", a["host"],
            str(a["pid"]), a["process"], str(a["owned_keys"]), str(a["owned_leases"]), meta[:40]]  # fmt: skip


def _lease_rows(r: dict[str, Any]) -> list[list[str]]:
    """One row per holder (a semaphore has several); the queue on the resource's first row."""
    kind = KINDS.get(r["kind"], r["kind"])
    if r["slots"] > 1:
        kind += f" {len(r['holders'])}/{r['slots']}"
    line = ", ".join(w["owner"] for w in r["waiters"])
    waiters = f"{len(r['waiters'])}: {line}" if r["waiters"] else "0"
    holders = [
        [h["owner"] + (f" (agent {h['agent']})" if h["agent"] else ""), str(h["fence"]), f"{h['expires_in']:.1f} s"]
        for h in r["holders"]
    ] or [["(none)", str(r["fence"]), "-"]]
    rows = []
    for i, (holder, fence, left) in enumerate(holders):
        rows.append([r["name"] if i == 0 else "", kind if i == 0 else "", holder, fence, left, waiters if i == 0 else ""])
    return rows


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
