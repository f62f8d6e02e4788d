"""Recovery of planted segments: generate N users, run the whole pipeline, score against truth.

    .venv/bin/python benchmarks/planted.py --users 100000 [--out out/bench] [--set key=value ...]

Prints the adjusted Rand index and NMI of gold/user_segments against truth.csv, and the
wall time of every stage. Scoring reads only (user_id, segment) pairs, joined in Spark.
"""
from __future__ import annotations

import argparse
import os
import time

from pyspark.sql import functions as F

from persona.config import Config
from persona.generate import generate
from persona.lake import Lake
from persona.logs import setup_logging
from persona.pipeline import run_pipeline
from persona.spark import get_spark
from persona.transform.metrics import contingency, external_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="out/bench")
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    setup_logging()

    out = os.path.abspath(os.path.join(args.out, f"planted-{args.users}"))
    start = time.time()
    counts = generate(os.path.join(out, "data"), users=args.users, seed=args.seed)
    generated = time.time() - start
    overrides = [f"lake.root={out}/lake", f"train.petastorm_cache={out}/petastorm",
                 *[f"sources.{s}.path={out}/data/{s}" for s in ("events", "users", "content")],
                 *args.overrides]
    config = Config.load(args.conf, overrides)
    results = run_pipeline(config)

    spark = get_spark(config)
    truth = (spark.read.csv(os.path.join(out, "data", "truth.csv"), header=True)
             .select("user_id", F.col("segment").cast("int").alias("planted")))
    found = Lake(spark, config.path_of("lake.root")).read("gold/user_segments")
    # A 5 x k contingency table, counted in Spark: small whatever the number of users.
    scores = external_metrics(contingency(found.join(truth, "user_id"), "planted", "segment"))
    print(f"\nplanted segments, {counts['users']} users, {counts['events']} events "
          f"(generated in {generated:.0f} s)")
    print("  " + "   ".join(f"{name.upper()} {value:.3f}" for name, value in scores.items()))
    for stage, metrics in results.items():
        print(f"  {stage:<9} {metrics['wall_seconds']:8.1f} s")


if __name__ == "__main__":
    main()
