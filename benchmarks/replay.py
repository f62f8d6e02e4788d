"""Online Retail day by day: incremental ingest, then `persona update`.

    .venv/bin/python benchmarks/replay.py [--start 2011-11-21] [--days 10] [--out out/bench]

The days before ``--start`` land in an empty folder and are ingested at once, and a first
`persona update` trains the models (no models are in use yet). Then each following day's
file lands, `persona ingest` runs (``ingest.mode: incremental``) and `persona update` brings
the features, embeddings and segments forward with the models in use (``retrain.auto: true``:
it retrains when the policy says retraining is due); then both run once more with nothing
new. For each day: the wall times, rows read and to bronze, users touched, users who changed
segment, drift and whether a retrain ran; beside them, the wall time of a full rebuild (every
file ingested again, then features, train, embed and segment) on the last day. Written to
benchmarks/results/ as JSON (``benchmarks/render.py`` puts it in docs/results.md).
"""
from __future__ import annotations

import argparse
import os
import shutil
import time

from pyspark.sql import functions as F

from persona.config import Config
from persona.ingest.increments import BATCHES_TABLE
from persona.ingest.validation import BATCH
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.pipeline import TRAINING, run_single, run_update
from persona.runtime.spark import get_spark
from record import ROOT, timed, write_result

DAYS = os.path.join(ROOT, "..", "shared", "data", "online-retail", "by-day")
WATCHED = ("bronze/events", BATCHES_TABLE, "silver/user_features", "gold/user_embeddings",
           "gold/user_segments", "gold/segment_history")


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
        f"mlflow.artifact_location={out}/mlartifacts", "retrain.auto=true"])
    lake = Lake(get_spark(config), config.path_of("lake.root"))

    def land(names: list[str]) -> None:
        for name in names:
            shutil.copy(os.path.join(DAYS, name), os.path.join(landing, name))

    started = time.time()
    land(before)
    first_seconds, first = timed(run_single, "ingest", config)
    train_seconds, _ = timed(run_update, config)
    print(f"{len(before)} days before {args.start}: {first['events_rows_read']:,} rows "
          f"ingested in {first_seconds:.1f} s, models trained by the first update in "
          f"{train_seconds:.1f} s")
    rows = []
    for name in replayed:
        land([name])
        ingest_seconds, m = timed(run_single, "ingest", config)
        batch = (lake.read(BATCHES_TABLE).where(F.col("source") == "events")
                 .orderBy("batch", ascending=False).first()["batch"])
        touched = (lake.read("bronze/events").where(F.col(BATCH) == batch)
                   .select("user_id").distinct().count())
        update_seconds, r = timed(run_update, config)
        embed, segment = r.get("embed", {}), r.get("segment", {})
        retrained = any(k.startswith("retrain_") for k in r)
        rows.append([name[:10], round(ingest_seconds, 1), round(update_seconds, 1),
                     m["events_rows_read"], m["events_rows_bronze"], touched,
                     segment.get("rows_inserted", 0), segment.get("rows_updated", 0),
                     round(embed.get("drift.max_psi", 0.0), 3),
                     round(segment.get("drift.max_share_change", 0.0), 3),
                     "yes" if (embed.get("retrain_due") or segment.get("retrain_due"))
                     else "no", "yes" if retrained else "no"])
        print("  " + "  ".join(str(c) for c in rows[-1]))
    versions = {t: lake.version(t) for t in WATCHED}
    noop_ingest, _ = timed(run_single, "ingest", config)
    noop_update, _ = timed(run_update, config)
    unchanged = versions == {t: lake.version(t) for t in WATCHED}

    config.set("ingest.mode", "full")
    rebuild = {"ingest": timed(run_single, "ingest", config)[0]}
    for stage in TRAINING:
        rebuild[stage] = timed(run_single, stage, config)[0]
    rebuild_seconds = sum(rebuild.values())
    daily = [r[1] + r[2] for r in rows]
    print(f"nothing new: ingest {noop_ingest:.1f} s, update {noop_update:.1f} s, tables "
          f"unchanged: {unchanged}; full rebuild on the last day {rebuild_seconds:.1f} s "
          f"({', '.join(f'{k} {v:.0f} s' for k, v in rebuild.items())}); a day's ingest + "
          f"update {min(daily):.1f} to {max(daily):.1f} s")

    days = {"title": f"One day at a time after {len(before)} days ingested at once "
                     f"({first['events_rows_read']:,} rows, {first_seconds:.1f} s) and the "
                     f"models trained by the first update ({train_seconds:.1f} s)",
            "columns": ["day", "ingest s", "update s", "rows read", "to bronze",
                        "users touched", "new users", "users who changed segment",
                        "largest feature PSI", "largest segment share change",
                        "retraining due", "retrained"],
            "rows": rows}
    summary = {"title": "A full rebuild on the last day, and a run with nothing new",
               "columns": ["run", "seconds", "tables unchanged"],
               "rows": [[f"full rebuild, {len(before) + len(replayed)} days ("
                         + ", ".join(f"{k} {v:.0f} s" for k, v in rebuild.items()) + ")",
                         round(rebuild_seconds, 1), "–"],
                        ["a day's ingest + update (median)",
                         round(sorted(daily)[len(daily) // 2], 1), "–"],
                        ["nothing new: ingest + update", round(noop_ingest + noop_update, 1),
                         str(unchanged).lower()]]}
    write_result("replay", [days, summary], time.time() - started,
                 {"start": args.start, "days": len(replayed)})


if __name__ == "__main__":
    main()
