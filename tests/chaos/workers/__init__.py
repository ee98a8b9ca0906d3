"""Worker processes for the chaos tests, and a handle to drive them from a test."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]


class Worker:
    """One worker subprocess (``python -m tests.chaos.workers.<module> ...``) and its events."""

    def __init__(self, proc: asyncio.subprocess.Process, stderr_path: Path) -> None:
        self.proc = proc
        self.stderr_path = stderr_path
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, module: str, *args: str, log_dir: Path) -> Worker:
        log_dir.mkdir(parents=True, exist_ok=True)
        stderr_path = log_dir / f"worker-{os.getpid()}-{id(args)}-{len(list(log_dir.iterdir()))}.err"
        with stderr_path.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", f"tests.chaos.workers.{module}", *args,
                cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=err,
            )  # fmt: skip
        return cls(proc, stderr_path)

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def next_event(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next JSON line; fails the test with the worker's stderr if none comes."""
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except TimeoutError:
            raise AssertionError(f"worker {self.pid}: no event within {timeout} s; stderr:\n{self.stderr()}") from None
        if not line:
            raise AssertionError(f"worker {self.pid} ended; stderr:\n{self.stderr()}")
        event: dict[str, Any] = json.loads(line)
        self.events.append(event)
        return event

    async def expect(self, name: str, timeout: float = 10.0) -> dict[str, Any]:
        while True:
            event = await self.next_event(timeout)
            if event["event"] == name:
                return event

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")

    def signal(self, sig: signal.Signals) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, sig)

    async def kill(self) -> None:
        """SIGKILL, then reap."""
        self.signal(signal.SIGKILL)
        await self.proc.wait()

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text()[-4000:]
        except OSError:
            return ""


async def stop_all(workers: list[Worker]) -> None:
    for w in workers:
        if w.proc.returncode is None:
            w.signal(signal.SIGCONT)
            w.signal(signal.SIGKILL)
    for w in workers:
        await w.proc.wait()
