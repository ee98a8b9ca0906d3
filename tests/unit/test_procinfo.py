"""Local process liveness: pid plus start time from /proc, zombies dead, pid reuse caught."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from lockstep import procinfo


def test_this_process_is_alive_and_identified() -> None:
    me = procinfo.current()
    assert me.pid == os.getpid() and me.start.isdigit()
    assert procinfo.is_alive(me.pid, me.start) is True
    started = procinfo.started_at(me.start)
    assert started is not None and 0 <= time.time() - started < 24 * 3600


def test_another_start_time_means_another_process() -> None:
    me = procinfo.current()
    assert procinfo.is_alive(me.pid, str(int(me.start) + 1)) is False


def test_a_killed_process_is_dead_even_as_a_zombie() -> None:
    proc = subprocess.Popen(["sleep", "30"])
    try:
        start = procinfo.start_ticks(proc.pid)
        assert start is not None and procinfo.is_alive(proc.pid, start) is True
        proc.kill()
        deadline = time.monotonic() + 5
        while procinfo.is_alive(proc.pid, start) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.path.exists(f"/proc/{proc.pid}")  # not waited for yet: a zombie
        assert procinfo.is_alive(proc.pid, start) is False
        assert procinfo.start_ticks(proc.pid) is None
    finally:
        proc.kill()
        proc.wait()
    assert procinfo.is_alive(proc.pid, start) is False


def test_a_command_name_with_spaces_and_parens_is_parsed() -> None:
    rename = "open('/proc/self/comm', 'w').write('a) b (c')"  # a process may rename itself so
    code = f"import sys, time; {rename}; sys.stdout.write('go\\n'); sys.stdout.flush(); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"go\n"
        with open(f"/proc/{proc.pid}/stat") as stat:
            assert "(a) b (c)" in stat.read()
        start = procinfo.start_ticks(proc.pid)
        assert start is not None and start.isdigit()
        assert procinfo.is_alive(proc.pid, start) is True
    finally:
        proc.kill()
        proc.wait()


def test_unknown_when_it_cannot_tell() -> None:
    assert procinfo.is_alive(os.getpid(), "") is None  # no start time recorded
    assert procinfo.start_ticks(0) is None
    assert procinfo.start_ticks(-5) is None


def test_host_id_is_boot_id_and_pid_namespace() -> None:
    host = procinfo.host_id()
    boot, _, pidns = host.partition("/")
    with open("/proc/sys/kernel/random/boot_id") as f:
        assert boot == f.read().strip()
    assert pidns == os.readlink("/proc/self/ns/pid").partition("[")[2].rstrip("]")
