"""Recovery of planted segments: generate N users, run the whole pipeline, score against truth.

    .venv/bin/python benchmarks/planted.py --users 100000 [--out out/bench] [--set key=value ...]

Prints the adjusted Rand index, NMI and ACC of gold/user_segments against truth.csv, the same
by how many events a user has, and the wall time of every stage. For scale, it also prints
what a supervised classifier reaches on the same features: multinomial logistic regression
(MLlib) trained on 70% of the users with their planted segment, scored on the other 30%,
overall and by events per user; no segmentation can be expected to do much better than that.
Scoring reads only small contingency tables, counted in Spark. The run is written to
benchmarks/results/ as JSON (``benchmarks/render.py`` puts it in docs/results.md).
"""
from __future__ import annotations

import argparse
import os
import time

from pyspark.ml.classification import LogisticRegression
from pyspark.ml.functions import array_to_vector
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from persona.config import Config
from persona.generate import generate
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.pipeline import run_pipeline
from persona.privacy.pseudonyms import Ids
from persona.runtime.spark import get_spark
from persona.segmentation.metrics import contingency, external_metrics
from record import write_result

ACTIVITY_BANDS = [(1, 10), (10, 20), (20, None)]  # events per user: [low, high)


def scores(df: DataFrame, predicted: str) -> dict[str, float]:
    return {name: round(value, 4) for name, value in
            external_metrics(contingency(df, "planted", predicted)).items()}


def line(label: str, users: int, metrics: dict[str, float]) -> list:
    return [label, users, metrics["ari"], metrics["nmi"], metrics["acc"]]


def by_activity(scored: DataFrame, features: DataFrame, predicted: str,
                prefix: str) -> list[list]:
    """A row per band of ``ACTIVITY_BANDS`` (events per user, from the behaviour group)."""
    if "n_events" not in features.columns:
        return []
    active = scored.join(features.select("user_id", "n_events"), "user_id")
    rows = []
    for low, high in ACTIVITY_BANDS:
        band = active.where(F.col("n_events") >= low)
        if high:
            band = band.where(F.col("n_events") < high)
        label = f"{low} to {high - 1} events" if high else f"{low} or more events"
        rows.append(line(f"{prefix}users with {label}", band.count(), scores(band, predicted)))
    return rows


def supervised_reference(features: DataFrame, truth: DataFrame, seed: int) -> DataFrame:
    """Held-out users with the ``prediction`` of a logistic regression trained on the others."""
    data = features.join(truth, "user_id").select(
        "user_id", array_to_vector("features").alias("v"), "planted",
        F.col("planted").cast("double").alias("label"))
    train, test = data.randomSplit([0.7, 0.3], seed=seed)
    model = LogisticRegression(featuresCol="v", maxIter=200, regParam=1e-4).fit(train)
    return model.transform(test).withColumn("prediction", F.col("prediction").cast("int"))


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
    lake = Lake(spark, config.path_of("lake.root"))
    truth = (spark.read.csv(os.path.join(out, "data", "truth.csv"), header=True)
             .select(Ids.of(config).column(F.col("user_id")).alias("user_id"),  # pseudonyms
                     F.col("segment").cast("int").alias("planted")))
    features = lake.read("silver/user_features")
    found = lake.read("gold/user_segments").join(truth, "user_id")
    rows = [line("all users", found.count(), scores(found, "segment")),
            *by_activity(found, features, "segment", "")]
    reference = supervised_reference(features, truth, args.seed)
    rows.append(line("supervised reference (logistic regression, 30% held out)",
                     reference.count(), scores(reference, "prediction")))
    rows += by_activity(reference, features, "prediction", "supervised reference, ")
    recovery = {"title": f"{counts['users']:,} users, {counts['events']:,} events: "
                         "segments against the planted truth",
                "columns": ["users", "count", "ARI", "NMI", "ACC"], "rows": rows}
    times = {"title": "Wall seconds per stage",
             "columns": ["generate", *results],
             "rows": [[round(generated, 1),
                       *(round(m["wall_seconds"], 1) for m in results.values())]]}
    for row in rows:
        print(f"  {row[0]:<60} {row[1]:>7}  ARI {row[2]:.3f}  NMI {row[3]:.3f}  "
              f"ACC {row[4]:.3f}")
    print("  " + ", ".join(f"{c} {v:.1f} s" for c, v in zip(times["columns"],
                                                             times["rows"][0])))
    write_result("planted", [recovery, times], time.time() - start,
                 {"generated": counts, "seed": args.seed, "overrides": args.overrides})


if __name__ == "__main__":
    main()
