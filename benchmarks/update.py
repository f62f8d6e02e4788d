"""`persona update` beside a full rebuild, on generated users.

    .venv/bin/python benchmarks/update.py [--users 100000] [--data DIR] [--out out/bench]

Generated data (or ``--data``, a folder `persona generate` wrote) with its last day of events
held back. First `persona ingest` and `persona update` on the rest: no models are in use yet,
so that update trains them (features, train, embed, segment), the cost of a full rebuild.
Then the held-back day lands, and `persona ingest` (incremental) and `persona update` (the
models in use, nothing trained) bring every user forward. The wall time of each, stage by
stage, with the shipped configuration (conf/local.yaml). Written to benchmarks/results/ as
JSON (``benchmarks/render.py`` puts it in docs/results.md).
"""
from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import shutil
import time

from pyspark.sql import functions as F

from persona.config import Config
from persona.generate import generate
from persona.logs import setup_logging
from persona.pipeline import run_single, run_update
from persona.runtime.spark import get_spark
from record import ROOT, timed, write_result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--data", help="a folder persona generate wrote (default: generate)")
    parser.add_argument("--conf", default=os.path.join(ROOT, "conf", "local.yaml"))
    parser.add_argument("--out", default="out/bench")
    args = parser.parse_args()
    setup_logging()
    started = time.time()

    out = os.path.abspath(os.path.join(args.out, f"update-{args.users}"))
    shutil.rmtree(out, ignore_errors=True)
    data = args.data or os.path.join(out, "data")
    if not args.data:
        generate(data, users=args.users, seed=0)
    landing, held = os.path.join(out, "landing", "events"), os.path.join(out, "held")
    config = Config.load(args.conf, [
        f"lake.root={out}/lake", f"sources.events.path={landing}",
        f"sources.users.path={data}/users", f"sources.content.path={data}/content",
        f"mlflow.tracking_uri=sqlite:///{out}/mlflow.db",
        f"mlflow.artifact_location={out}/mlartifacts",
        f"train.petastorm_cache={out}/petastorm"])
    spark = get_spark(config)
    raw = spark.read.option("header", True).csv(os.path.join(data, "events"))
    last = raw.agg(F.max(F.to_date("event_time"))).first()[0]
    cut = (last - dt.timedelta(days=1)).isoformat()
    day = F.to_date("event_time") > F.lit(cut)
    raw.where(~day | F.col("event_time").isNull()).write.option("header", True).csv(landing)
    raw.where(day).write.option("header", True).csv(held)

    ingest_first, _ = timed(run_single, "ingest", config)
    train_seconds, built = timed(run_update, config)
    rebuild = {"ingest": ingest_first, **{k: v["wall_seconds"] for k, v in built.items()}}
    for path in glob.glob(os.path.join(held, "part-*")):
        shutil.move(path, landing)
    ingest_day, ingested = timed(run_single, "ingest", config)
    update_seconds, updated = timed(run_update, config)
    update = {"ingest": ingest_day, **{k: v["wall_seconds"] for k, v in updated.items()}}
    # Whole commands, so that the update's own work (the models in use, the inputs' versions,
    # meta/updates) counts; the stages are their breakdown.
    full, daily = ingest_first + train_seconds, ingest_day + update_seconds
    print(f"{args.users:,} users: full rebuild {full:.1f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in rebuild.items())}); the last day "
          f"({ingested['events_rows_read']:,} events after {cut}) brought in by ingest + "
          f"update in {daily:.1f} s ({', '.join(f'{k} {v:.0f} s' for k, v in update.items())})"
          f": {daily / full:.2f} of the rebuild")

    table = {"title": f"{args.users:,} generated users: a full rebuild, and one day of events "
                      f"({ingested['events_rows_read']:,} rows) brought in by `persona update`",
             "columns": ["run", "seconds", "of the rebuild", "of which stages (s)"],
             "rows": [["full rebuild: ingest, then the first update trains",
                       round(full, 1), 1.0,
                       ", ".join(f"{k} {v:.0f}" for k, v in rebuild.items())],
                      ["one day: ingest (incremental) + update (nothing trained)",
                       round(daily, 1), round(daily / full, 2),
                       ", ".join(f"{k} {v:.0f}" for k, v in update.items())]]}
    write_result("update", [table], time.time() - started,
                 {"users": args.users, "held_back_after": cut,
                  "users_updated": updated["features"]["users"],
                  "users_changed_segment": updated["segment"].get("rows_updated", 0)})


if __name__ == "__main__":
    main()
