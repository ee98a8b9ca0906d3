#!/usr/bin/env bash
# Check python/lockstep/_core.pyi against the built extension (rebuild it first with
# `.venv/bin/pip install -e . --no-deps`). Fails on any mismatch.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m mypy.stubtest lockstep._core "$@"
