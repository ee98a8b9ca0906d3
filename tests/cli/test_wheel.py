"""The release wheel installs into a fresh virtual environment and imports on its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_release_wheel_imports_in_a_new_venv(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [sys.executable, "-m", "maturin", "build", "--release", "--quiet", "-o", str(wheels)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("lockstep-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=600
    )
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run(
        [
            str(py),
            "-c",
            "import lockstep, lockstep._core as c; "
            "assert lockstep.__file__.startswith(%r), lockstep.__file__; "
            "print(lockstep.__version__, c.VERSION)" % str(venv),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    version = probe.stdout.split()
    assert version[0] == version[1]
