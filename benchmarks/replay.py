"""Online Retail day by day through incremental ingest.

    .venv/bin/python benchmarks/replay.py [--start 2011-11-21] [--days 10] [--out out/bench]

The days before ``--start`` land in an empty folder and are ingested at once; then each
following day's file lands and `persona ingest` runs (``ingest.mode: incremental``), then
once more with nothing new. For each day: wall time, files and rows read, rows to bronze
and quarantine; beside them, the wall time of rebuilding the same lake from every file
(``ingest.mode: full``) on the first and the last day. Written to benchmarks/results/ as
JSON (``benchmarks/render.py`` puts it in docs/results.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from persona.config import Config
from persona.ingest.increments import BATCHES_TABLE
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.pipeline import run_single
from persona.runtime.spark import get_spark
from record import ROOT, write_result

DAYS = os.path.join(ROOT, "..", "shared", "data", "online-retail", "by-day")


def timed_ingest(config: Config) -> tuple[float, dict]:
    start = time.time()
    metrics = run_single("ingest", config)
    return time.time() - start, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="conf/online_retail.yaml")
    parser.add_argument("--start", default="2011-11-21", help="first day replayed one by one")
    parser.add_argument("--days", type=int, default=10, help="days replayed one by one")
    parser.add_argument("--out", default="out/bench")
    args = parser.parse_args()
    setup_logging()

    out = os.path.abspath(os.path.join(args.out, "replay"))
    shutil.rmtree(out, ignore_errors=True)
    landing = os.path.join(out, "landing")
    os.makedirs(landing)
    files = sorted(f for f in os.listdir(DAYS) if f.endswith(".csv.gz"))
    before = [f for f in files if f[:10] < args.start]
    replayed = [f for f in files if f[:10] >= args.start][:args.days]
    config = Config.load(args.conf, [
        f"lake.root={out}/lake", f"sources.events.path={landing}",
        f"mlflow.tracking_uri=sqlite:///{out}/mlflow.db",
        f"mlflow.artifact_location={out}/mlartifacts"])
    lake = Lake(get_spark(config), config.path_of("lake.root"))

    def land(names: list[str]) -> None:
        for name in names:
            shutil.copy(os.path.join(DAYS, name), os.path.join(landing, name))

    def rebuild() -> float:
        config.set("ingest.mode", "full")
        seconds, _ = timed_ingest(config)
        config.set("ingest.mode", "incremental")
        return seconds

    started = time.time()
    land(before)
    first_seconds, first = timed_ingest(config)
    print(f"{len(before)} days before {args.start}: {first['events_rows_read']:,} rows in "
          f"{first_seconds:.1f} s")
    rebuild_first = rebuild()
    rows = []
    for name in replayed:
        land([name])
        seconds, m = timed_ingest(config)
        batch = lake.read(BATCHES_TABLE).orderBy("batch", ascending=False).first()
        rows.append([name[:10], round(seconds, 1), batch["files"], m["events_rows_read"],
                     m["events_rows_bronze"], m["events_rows_quarantine"],
                     m["events_total_rows_read"]])
        print(f"  {name[:10]}  {seconds:5.1f} s  {m['events_rows_read']:>6,} rows read  "
              f"{m['events_rows_bronze']:>6,} bronze  {m['events_rows_quarantine']:>5,} "
              f"quarantine")
    versions = lake.version("bronze/events"), lake.version(BATCHES_TABLE)
    noop_seconds, _ = timed_ingest(config)
    unchanged = versions == (lake.version("bronze/events"), lake.version(BATCHES_TABLE))
    rebuild_last = rebuild()
    print(f"nothing new: {noop_seconds:.1f} s, tables unchanged: {unchanged}; rebuild from "
          f"every file: {rebuild_first:.1f} s on the first day, {rebuild_last:.1f} s on the last")

    days = {"title": f"One day's file at a time after {len(before)} days ingested at once "
                     f"({first['events_rows_read']:,} rows, {first_seconds:.1f} s)",
            "columns": ["day", "ingest s", "files read", "rows read", "to bronze",
                        "to quarantine", "rows read since the rebuild"],
            "rows": rows}
    summary = {"title": "The same lake rebuilt from every file (ingest.mode: full), and a "
                        "run with nothing new",
               "columns": ["run", "seconds", "tables unchanged"],
               "rows": [[f"rebuild, {len(before)} days", round(rebuild_first, 1), "–"],
                        [f"rebuild, {len(before) + len(replayed)} days",
                         round(rebuild_last, 1), "–"],
                        ["nothing new", round(noop_seconds, 1), str(unchanged).lower()]]}
    write_result("replay", [days, summary], time.time() - started,
                 {"start": args.start, "days": len(replayed)})


if __name__ == "__main__":
    main()
