"""One JSON file per benchmark run under benchmarks/results/: when, at which commit, by which
command, on how many cores, and the figures. ``benchmarks/render.py`` turns them into
docs/results.md."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benchmarks", "results")


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def command_line() -> str:
    """The command that is running, as typed from the repository root."""
    script = os.path.relpath(os.path.abspath(sys.argv[0]), ROOT)
    return " ".join(shlex.quote(a) for a in [".venv/bin/python", script, *sys.argv[1:]])


def write_result(benchmark: str, tables: list[dict], seconds: float,
                 figures: dict | None = None, out: str = RESULTS) -> str:
    """Write one run: ``tables`` are ``{"title", "columns", "rows"}`` (a cell is a number, a
    text or ``[mean, sd]``), ``figures`` anything else worth keeping. Returns the path."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    record = {
        "benchmark": benchmark,
        "date": now.isoformat().replace("+00:00", "Z"),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "command": command_line(),
        "cores": os.cpu_count(),
        "seconds": round(seconds, 1),
        "tables": tables,
        "figures": figures or {},
    }
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{benchmark}-{now.strftime('%Y%m%dT%H%M%SZ')}.json")
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=2)
        fh.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)}; `python benchmarks/render.py` updates "
          "docs/results.md", file=sys.stderr)
    return path


def timed(fn, *args):
    """``(seconds, fn(*args))``: the wall time of one call and what it returned."""
    start = time.time()
    value = fn(*args)
    return time.time() - start, value
