"""The ``lockstep`` command.

    lockstep doctor [URL]          what the backend is, and what to fix about it
    lockstep check  [URL]          the seed's validation checklist, with measured figures
    lockstep status [URL]          agents, leases, queues, memory (see lockstep.cli_status)
    lockstep sweep  [URL]          reap dead agents now; --reset clears one namespace
    lockstep epic run PLAN.toml    run an epic of parallel sprints (see lockstep.cli_epic)
    lockstep lock NAME -- CMD      run CMD holding a lock and leased ports (see lockstep.cli_lock)

URL defaults as in ``lockstep.connect`` (argument, $LOCKSTEP_URL, config file,
``file://./.lockstep/coord.db``). Exit status: 0 all good, 1 a check failed,
2 the backend or the configuration is wrong.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence

from . import __version__
from .checks import Row, run_checks
from .checks.stats import ms, percentile
from .coordinator import connect
from .errors import BackendError, ConfigError, LockstepError

EXIT_OK, EXIT_FAILED, EXIT_BROKEN = 0, 1, 2


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line.rstrip(), "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


# -- doctor ---------------------------------------------------------------------------
async def _doctor(url: str | None, out: list[str]) -> int:
    coord = connect(url)
    s = coord.settings
    out.append(f"url           {s.display_url}   (from {s.source})")
    out.append(f"driver        {coord.driver.name}")
    out.append(f"namespace     {s.namespace}")
    out.append(f"capabilities  {', '.join(sorted(c.value for c in coord.capabilities))}")
    async with coord:
        info = await coord.server_info()
        rtts = [await coord.ping() for _ in range(20)]
        before = time.time()
        backend_now = await coord.time()
        skew = backend_now - (before + time.time()) / 2
    out.append(f"server        {info.driver} {info.version}")
    out.append(f"persistence   {info.persistence} ({'durable' if info.durable else 'NOT durable'})")
    out.append(f"round trip    p50 {ms(percentile(rtts, 50))}, max {ms(max(rtts))} over {len(rtts)} pings")
    out.append(f"clock skew    {skew * 1000:+.1f} ms (backend minus this host)")
    for name, value in sorted(info.details.items()):
        out.append(f"  {name}: {value}")
    for warning in info.warnings:
        out.append(f"WARNING: {warning}")
    return EXIT_OK


# -- check ----------------------------------------------------------------------------
STATUS = {"pass": "PASS", "fail": "FAIL", "skip": "SKIP"}


def _row_cells(row: Row) -> list[str]:
    measured = row.measured or row.detail
    return [STATUS[row.status], row.title, measured, row.target]


async def _check(args: argparse.Namespace) -> int:
    coord = connect(args.url)
    if not args.json:
        print(f"lockstep check on {coord.settings.display_url} ({coord.driver.name} driver)", flush=True)

    def progress(row: Row) -> None:
        if not args.json:
            print(f"  {STATUS[row.status]}  {row.title}  ({row.seconds:.1f} s)", file=sys.stderr, flush=True)

    rows = await run_checks(args.url, only=args.only or None, full=args.full, on_row=progress)
    failed = [r for r in rows if r.status == "fail"]
    if args.json:
        print(json.dumps({"url": coord.settings.display_url, "rows": [r.as_dict() for r in rows]}, indent=2))
    else:
        print(table(["", "check", "measured", "target"], [_row_cells(r) for r in rows]))
        for row in rows:
            if row.detail and row.measured:
                print(f"  {row.title}: {row.detail}")
        passed = sum(r.status == "pass" for r in rows)
        skipped = sum(r.status == "skip" for r in rows)
        print(f"check: {passed} passed, {len(failed)} failed, {skipped} skipped")
    return EXIT_FAILED if failed else EXIT_OK


# -- entry point ----------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lockstep", description="Coordination for parallel AI-agent work.")
    p.add_argument("--version", action="version", version=f"lockstep {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("doctor", help="describe the backend and warn about unsafe settings")
    d.add_argument("url", nargs="?", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    c = sub.add_parser("check", help="run the seed's validation checklist against a backend")
    c.add_argument("url", nargs="?", help="backend URL (default: $LOCKSTEP_URL, config, file driver)")
    c.add_argument("--json", action="store_true", help="print the rows as JSON")
    c.add_argument("--full", action="store_true", help="run the seed's full-length versions")
    c.add_argument("--only", action="append", metavar="ROW", help="run only this row (repeatable)")
    from . import cli_status

    cli_status.add_parsers(sub)  # status, sweep
    from . import cli_epic

    cli_epic.add_parsers(sub)  # epic run
    from . import cli_lock

    cli_lock.add_parsers(sub)  # lock NAME -- CMD
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from . import cli_lock

    argv, command = cli_lock.split_command(sys.argv[1:] if argv is None else argv)
    p = parser()
    args = p.parse_args(argv)
    if command is not None and not command:
        p.error("lock: give the command to run after `--`: lockstep lock NAME [options] -- CMD [ARGS ...]")
    try:
        if args.command == "doctor":
            lines: list[str] = []
            try:
                return asyncio.run(_doctor(args.url, lines))
            finally:
                print("\n".join(lines))
        if args.command == "check":
            return asyncio.run(_check(args))
        if args.command in ("status", "sweep"):
            from . import cli_status

            return cli_status.run(args)
        if args.command == "epic":
            from . import cli_epic

            return cli_epic.run(args)
        if args.command == "lock":
            assert command is not None
            return cli_lock.run(args, command)
    except ConfigError as exc:
        print(f"lockstep: configuration error: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except BackendError as exc:
        print(f"lockstep: backend error: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except LockstepError as exc:
        print(f"lockstep: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_BROKEN
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command!r}")


if __name__ == "__main__":
    sys.exit(main())
