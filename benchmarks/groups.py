"""Which feature groups help: autoencoder + K-Means on subsets of the groups of one planted
feature table, over several training seeds.

    .venv/bin/python benchmarks/planted.py --users 20000 --set segment.k=5 --set 'tags={}'
    .venv/bin/python benchmarks/groups.py --out out/bench/planted-20000 [--seeds 3]
        [--set train.hidden=[64,32] ...]

Reads silver/user_features (built with every group on) and truth.csv of a planted.py run.
For each group set it rescales the set's groups as the features stage does (Scaler: equal
variance per group), appends the weighted event sequence when the set has it, trains the
autoencoder of ``train.*`` in this process (the train stage runs the same network under
Horovod; one process keeps the sweep short), clusters the embeddings with K-Means (k = the
planted segments) and prints the ARI against the planted segments, mean ± sd over the seeds,
next to K-Means on the scaled features themselves, and writes the run to benchmarks/results/
as JSON (``benchmarks/render.py`` puts it in docs/results.md). The table goes to the driver:
this is a benchmark on tens of thousands of users, not a stage.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import replace

import numpy as np
from pyspark.sql import functions as F
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from persona.config import Config
from persona.features.build import Scaler
from persona.lake.tables import Lake
from persona.privacy.pseudonyms import Ids
from persona.runtime.spark import get_spark
from persona.stages.features import feature_groups, sequence_shape
from persona.stages.train import spec_from_config
from persona.training.autoencoder import build_autoencoder
from record import write_result

BASE = ["behaviour", "event_mix", "category", "time", "profile"]
SETS = {
    "base": BASE,
    "base + windows": BASE + ["windows"],
    "base + diversity": BASE + ["diversity"],
    "base + content + text": BASE + ["content", "text"],
    "base + sequence": BASE + ["sequence"],
    "all": BASE + ["windows", "diversity", "content", "text", "sequence"],
}


def matrix(features, groups: dict, shape, names: list[str]) -> tuple[np.ndarray, tuple | None]:
    """(scaled inputs of the groups in ``names``, (steps, step_size) of the sequence at their
    end or None)."""
    chosen = {g: groups[g] for g in names if g in groups}
    scaled = Scaler.fit(features, chosen).transform(features, "x")
    sequence = None
    if "sequence" in names and shape:
        start = sum(len(c) for c in groups.values()) + 1
        sequence = shape
        scaled = scaled.withColumn("x", F.concat("x", F.slice("features", start,
                                                               shape[0] * shape[1])))
    rows = scaled.select("x").toPandas()["x"]
    return np.stack(rows.to_numpy()).astype(np.float32), sequence


def embed(x: np.ndarray, config: Config, sequence, seed: int) -> np.ndarray:
    """Train the autoencoder of ``train.*`` (with training seed ``seed``) on ``x``; the
    embeddings of ``x``."""
    import tensorflow as tf

    spec = replace(spec_from_config(config, x.shape[1], sequence), seed=seed)
    tf.keras.utils.set_random_seed(spec.seed)
    autoencoder, encoder = build_autoencoder(spec)
    autoencoder.compile(tf.keras.optimizers.Adam(spec.learning_rate), "mse")
    autoencoder.fit(x, x, batch_size=spec.batch_size, epochs=spec.epochs, verbose=0)
    return encoder.predict(x, batch_size=4096, verbose=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/bench/planted-20000")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    out = os.path.abspath(args.out)
    start = time.time()
    config = Config.load(args.conf, [f"lake.root={out}/lake", *args.overrides])
    spark = get_spark(config)
    truth = (spark.read.csv(os.path.join(out, "data", "truth.csv"), header=True)
             .select(Ids.of(config).column(F.col("user_id")).alias("user_id"),  # pseudonyms
                     F.col("segment").cast("int").alias("planted")))
    features = Lake(spark, config.path_of("lake.root")).read("silver/user_features")
    groups, shape = feature_groups(features), sequence_shape(features)
    if not groups:
        raise SystemExit(f"{out}/lake/silver/user_features names no feature groups: "
                         "rebuild it with `persona features`")
    features = features.join(truth, "user_id").orderBy("user_id").cache()
    planted = np.array(features.select("planted").toPandas()["planted"])
    k = len(set(planted))
    print(f"{len(planted)} users, {k} planted segments, train.hidden="
          f"{config.get('train.hidden')}, {args.seeds} seeds")
    print(f"{'groups':<24}{'K-Means on features':>20}{'AE + K-Means':>20}{'s/seed':>8}")
    rows = []
    for name, names in SETS.items():
        x, sequence = matrix(features, groups, shape, names)
        raw = adjusted_rand_score(planted, KMeans(k, n_init=4, random_state=0).fit_predict(x))
        begin, scores = time.time(), []
        for seed in range(args.seeds):
            z = embed(x, config, sequence, seed)
            labels = KMeans(k, n_init=4, random_state=seed).fit_predict(z)
            scores.append(adjusted_rand_score(planted, labels))
        mean, spread = statistics.mean(scores), statistics.pstdev(scores)
        seconds = (time.time() - begin) / args.seeds
        rows.append([name, round(raw, 4), [round(mean, 4), round(spread, 4)], round(seconds, 1)])
        print(f"{name:<24}{raw:>20.3f}{mean:>14.3f} ± {spread:.3f}{seconds:>8.0f}", flush=True)
    write_result("groups", [{
        "title": f"{len(planted):,} users, {k} planted segments, train.hidden = "
                 f"{config.get('train.hidden')}: ARI against the planted segments",
        "columns": ["groups", "K-Means on the features", "AE + K-Means (mean ± sd)",
                    "s per seed"],
        "rows": rows}], time.time() - start, {"seeds": args.seeds, "overrides": args.overrides})


if __name__ == "__main__":
    main()
