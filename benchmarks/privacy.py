"""What privacy costs: planted segments recovered with and without DP-SGD, and wall times.

    .venv/bin/python benchmarks/privacy.py --users 20000 [--epsilons 1 3 10] [--out out/bench]
                                           [--set key=value ...]

Generates N users with planted segments, runs ingest and features once (pseudonymization
off, so that the planted truth can be joined), then train, embed and segment (k = the number
of planted segments) without differential privacy and with DP-SGD at the noise multiplier
that the accountant gives for each target epsilon at the configured epochs, batch size and
ranks (delta = 1 / users). Prints and records the ARI and NMI of each against the planted
truth and the wall time of train; then the wall time of ingest with and without pseudonyms,
and of forgetting 1,000 users; JSON in benchmarks/results/ (``benchmarks/render.py`` puts
it in docs/results.md).
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from functools import partial

from pyspark.sql import functions as F

from persona.config import Config
from persona.generate import SEGMENTS, generate
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.pipeline import run_single
from persona.privacy import forget
from persona.runtime.context import run_stage
from persona.runtime.spark import get_spark
from persona.segmentation.metrics import contingency, external_metrics
from persona.training.horovod import steps_per_epoch
from persona.training.privacy import noise_for_epsilon
from record import write_result


@dataclass
class Bench:
    """A generated data set, ingested and with its features built, and how it was run."""

    out: str
    users: int
    events: int
    conf: str
    overrides: list[str]

    def config(self, *more: str) -> Config:
        return Config.load(self.conf, [*self.overrides, *more])


def prepare(users: int, seed: int, out: str, conf: str, extra: list[str]) -> Bench:
    """Generate the data, ingest it and build the features once for every measurement."""
    counts = generate(os.path.join(out, "data"), users=users, seed=seed)
    overrides = [f"lake.root={out}/lake", f"train.petastorm_cache={out}/petastorm",
                 f"mlflow.tracking_uri=sqlite:///{out}/mlflow.db",
                 f"mlflow.artifact_location={out}/mlartifacts",
                 *[f"sources.{s}.path={out}/data/{s}" for s in ("events", "users", "content")],
                 "privacy.pseudonymize=false", f"segment.k={len(SEGMENTS)}", *extra]
    bench = Bench(out, counts["users"], counts["events"], conf, overrides)
    for stage in ("ingest", "features"):
        run_single(stage, bench.config())
    return bench


def recovery(bench: Bench) -> dict[str, float]:
    """ARI and NMI of gold/user_segments against the planted truth (small contingency)."""
    config = bench.config()
    spark = get_spark(config)
    truth = (spark.read.csv(os.path.join(bench.out, "data", "truth.csv"), header=True)
             .select("user_id", F.col("segment").cast("int").alias("planted")))
    found = Lake(spark, config.path_of("lake.root")).read("gold/user_segments").join(
        truth, "user_id")
    return external_metrics(contingency(found, "planted", "segment"))


def dp_training(bench: Bench, args: argparse.Namespace) -> list[dict]:
    """Train, embed and segment without DP, then with DP-SGD at each target epsilon."""
    config = bench.config()
    ranks, batch = config.get("train.num_proc"), config.get("train.batch_size")
    steps = config.get("train.epochs") * steps_per_epoch(bench.users, batch, ranks)
    delta = 1 / bench.users
    variants = [("no DP", None, None)] + [
        (f"DP, target epsilon {e:g}", e,
         noise_for_epsilon(e, bench.users, batch * ranks, steps, delta))
        for e in args.epsilons]
    rows = []
    for label, target, sigma in variants:
        noise = [] if sigma is None else [f"train.privacy.noise_multiplier={sigma}"]
        train = run_single("train", bench.config(*noise))
        for stage in ("embed", "segment"):
            run_single(stage, bench.config(*noise))
        scores = recovery(bench)
        rows.append([label, "-" if sigma is None else round(sigma, 3),
                     "-" if sigma is None else round(train["dp_epsilon"], 3),
                     round(scores["ari"], 4), round(scores["nmi"], 4),
                     round(train["wall_seconds"], 1)])
        print(f"  {label:<28} noise {rows[-1][1]!s:>6}  epsilon {rows[-1][2]!s:>6}  "
              f"ARI {rows[-1][3]:.3f}  NMI {rows[-1][4]:.3f}  train {rows[-1][5]:.1f} s")
    return [{"title": f"{bench.users:,} users, {bench.events:,} events: planted segments "
                      f"recovered with DP-SGD ({config.get('train.epochs')} epochs, "
                      f"{ranks} ranks x batch {batch}, delta 1/users)",
             "columns": ["training", "noise multiplier", "epsilon", "ARI", "NMI",
                         "train seconds"],
             "rows": rows}]


def pseudonymization(bench: Bench, args: argparse.Namespace) -> list[dict]:
    """Wall time of ingest with the ids as they are and with pseudonyms, on the same raw
    data, into a lake of its own."""
    rows = []
    for label, on in (("ids as they are", "false"), ("pseudonymized (HMAC-SHA256)", "true")):
        result = run_single("ingest", bench.config(f"privacy.pseudonymize={on}",
                                                   f"lake.root={bench.out}/lake-ingest"))
        rows.append([label, round(result["wall_seconds"], 1),
                     round(bench.events / result["wall_seconds"])])
        print(f"  ingest, {label:<28} {rows[-1][1]:.1f} s  {rows[-1][2]:,} events/s")
    return [{"title": f"{bench.users:,} users, {bench.events:,} events: ingest with and "
                      f"without pseudonyms",
             "columns": ["ingest", "seconds", "events/s"], "rows": rows}]


def forgetting(bench: Bench, args: argparse.Namespace, users: int = 1000) -> list[dict]:
    """Wall time of `persona forget` of ``users`` users on the lake the runs above left
    (delete, purge, vacuum at the configured retention)."""
    config = bench.config()
    spark = get_spark(config)
    ids = [r["user_id"] for r in spark.read.csv(os.path.join(bench.out, "data", "truth.csv"),
                                                header=True).select("user_id").limit(users)
           .collect()]
    path = os.path.join(bench.out, "forget-ids.txt")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(ids) + "\n")
    result = run_stage("forget", partial(forget.run, ids_path=path), config)
    row = [len(ids), config.get("privacy.retention_hours"), round(result["wall_seconds"], 1)]
    print(f"  forget {row[0]:,} users (retention {row[1]} h): {row[2]:.1f} s")
    return [{"title": f"{bench.users:,} users: forgetting {len(ids):,} of them from every "
                      f"table",
             "columns": ["users forgotten", "retention hours", "seconds"], "rows": [row]}]


# Each measurement takes the prepared data set and the arguments, and returns its tables;
# forgetting comes last, as it removes users.
MEASUREMENTS = [dp_training, pseudonymization, forgetting]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--out", default="out/bench")
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    setup_logging()

    start = time.time()
    out = os.path.abspath(os.path.join(args.out, f"privacy-{args.users}"))
    bench = prepare(args.users, args.seed, out, args.conf, args.overrides)
    tables = [table for measure in MEASUREMENTS for table in measure(bench, args)]
    write_result("privacy", tables, time.time() - start,
                 {"seed": args.seed, "epsilons": args.epsilons, "overrides": args.overrides})


if __name__ == "__main__":
    main()
