"""Segments judged by what customers do next, on the real Online Retail transactions.

    .venv/bin/python benchmarks/retail.py [--cutoff 2011-09-01] [--horizon 90] [--k 3 5 7]
        [--variant NAME=KEY=VALUE ...] [--out out/bench]

For each variant (the shipped `conf/online_retail.yaml`, and the variants given: a name and
the overrides that make it), the whole pipeline runs with `features.as_of` at the cut-off,
then `persona segment` and `persona evaluate --set evaluate.outcome.horizon_days=H` for
`segment.k: auto` and each k given. The table: for every variant and k, the share of the
variance of next-period log spend and churn between segments (eta²) of the engine's
segments and, computed in the same evaluate run on the same customers, of the classic RFM
named segments and of K-Means on log recency, frequency and monetary value. Written to
benchmarks/results/ as JSON (``benchmarks/render.py`` puts it in docs/results.md).
"""
from __future__ import annotations

import argparse
import os
import time

from pyspark.sql import functions as F

from persona.config import Config
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.pipeline import run_pipeline, run_single
from persona.runtime.spark import get_spark
from persona.stages.evaluate import QUALITY_TABLE
from record import write_result

METHODS = ("persona", "rfm_kmeans", "rfm_segments")


def outcome_rows(lake: Lake) -> dict[str, dict[str, float]]:
    """{method: {metric: value}} of the outcome rows of gold/segment_quality (a few rows)."""
    rows = lake.read(QUALITY_TABLE).where(F.col("space") == "outcome").collect()
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        out.setdefault(r["method"], {})[r["metric"]] = r["value"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf", default="conf/online_retail.yaml")
    parser.add_argument("--cutoff", default="2011-09-01")
    parser.add_argument("--horizon", type=int, default=90)
    parser.add_argument("--k", type=int, nargs="*", default=[3, 5, 7])
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=KEY=VALUE: a variant and one of its overrides (repeatable)")
    parser.add_argument("--out", default="out/bench")
    args = parser.parse_args()
    setup_logging()

    variants: dict[str, list[str]] = {"shipped": []}
    for item in args.variant:
        name, _, setting = item.partition("=")
        variants.setdefault(name, []).append(setting)
    start = time.time()
    rows = []
    for name, overrides in variants.items():
        out = os.path.abspath(os.path.join(args.out, f"retail-{name}"))
        config = Config.load(args.conf, [
            f"lake.root={out}/lake", f"train.petastorm_cache={out}/petastorm",
            f"features.as_of={args.cutoff}", "tags={}", "evaluate.stability_runs=0",
            "evaluate.baselines=false", f"evaluate.outcome.horizon_days={args.horizon}",
            *overrides])
        run_pipeline(config)
        lake = Lake(get_spark(config), config.path_of("lake.root"))
        for k in ["auto", *args.k]:
            config.set("segment.k", k)
            if k != "auto":
                run_single("segment", config)
            run_single("evaluate", config)
            scores = outcome_rows(lake)
            for method in METHODS:
                s = scores[method]
                rows.append([name, str(k), method, int(s["segments"]),
                             round(s["eta2_log_spend"], 4), round(s["eta2_churn"], 4)])
                print(f"  {name:<12} k={k:<5} {method:<13} {int(s['segments']):>3} segments  "
                      f"eta² log spend {s['eta2_log_spend']:.3f}  churn {s['eta2_churn']:.3f}")
    table = {"title": f"Online Retail, cut-off {args.cutoff}, next {args.horizon} days: "
                      f"eta² of log spend and churn between segments",
             "columns": ["variant", "segment.k", "segmentation", "segments",
                         "eta² log spend", "eta² churn"], "rows": rows}
    write_result("retail", [table], time.time() - start,
                 {"cutoff": args.cutoff, "horizon_days": args.horizon, "variants": variants})


if __name__ == "__main__":
    main()
