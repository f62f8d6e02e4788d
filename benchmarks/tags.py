"""A tag that only the items users chose reveal: the planted interest of generated users,
predicted with and without the items feature group.

    .venv/bin/python benchmarks/tags.py --users 3000 [--seeds 3] [--out out/bench]
        [--set key=value ...]

`persona generate` plants an ``interest`` that shows only in which items a user chooses,
not in how much, when or in which category they buy. The benchmark generates N users,
ingests them with ``interest`` declared as a categorical attribute, builds the features of
``--conf`` twice, without and with the ``items`` group, and on each trains the tag
``tags.interest: {attribute: interest}`` once per seed (``tags.interest.seed``: the split
by user and the DNN's initial weights). The tag stage leaves out the columns made from the
attribute itself; no embedding is built, so the tag reads the features alone. Prints the
test users' ROC AUC (mean one-vs-rest over the interests) and macro F1 of the DNN, the
logistic regression and the majority class, mean ± sd over the seeds, and how often each
model was shipped; writes the run to benchmarks/results/ as JSON (``benchmarks/render.py``
puts it in docs/results.md). Only gold/tag_metrics, a few rows, reaches the driver.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

from persona.config import Config
from persona.generate import generate
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.pipeline import run_single
from persona.runtime.spark import get_spark
from persona.stages.tag import METRICS_TABLE
from record import write_result

TAG = "interest"
MODELS = ("dnn", "logreg", "majority")


def summary(values: list[float]) -> list[float]:
    """[mean, sd] rounded for the record."""
    return [round(statistics.mean(values), 4), round(statistics.pstdev(values), 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated data")
    parser.add_argument("--seeds", type=int, default=3, help="tag seeds per group set")
    parser.add_argument("--out", default="out/bench")
    parser.add_argument("--conf", default="conf/local.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    args = parser.parse_args()
    setup_logging()

    out = os.path.abspath(os.path.join(args.out, f"tags-{args.users}"))
    start = time.time()
    counts = generate(os.path.join(out, "data"), users=args.users, seed=args.seed)
    base = [f"lake.root={out}/lake", f"train.petastorm_cache={out}/petastorm",
            *[f"sources.{s}.path={out}/data/{s}" for s in ("events", "users", "content")],
            "sources.users.attributes.categorical=[gender, country, plan, interest]",
            f"tags={{{TAG}: {{attribute: {TAG}}}}}", *args.overrides]
    config = Config.load(args.conf, base)
    run_single("ingest", config)
    groups = [g for g in config.get("features.groups") if g != "items"]
    sets = {"without items": groups, "with items": groups + ["items"]}
    rows, runs = [], []
    for name, chosen in sets.items():
        with_groups = [*base, f"features.groups=[{', '.join(chosen)}]"]
        run_single("features", Config.load(args.conf, with_groups))
        scores = {m: {"roc_auc": [], "f1": [], "shipped": 0} for m in MODELS}
        for seed in range(args.seeds):
            run_single("tag", Config.load(args.conf, [*with_groups,
                                                      f"tags.{TAG}.seed={seed}"]))
            metrics = (Lake(get_spark(config), config.path_of("lake.root")).read(METRICS_TABLE)
                       .where(f"tag = '{TAG}'").collect())
            for r in metrics:
                scores[r["model"]]["f1"].append(r["f1"])
                scores[r["model"]]["shipped"] += bool(r["shipped"])
                if r["roc_auc"] is not None:
                    scores[r["model"]]["roc_auc"].append(r["roc_auc"])
                runs.append({"groups": name, "seed": seed, "model": r["model"],
                             "roc_auc": r["roc_auc"], "f1": r["f1"], "shipped": r["shipped"],
                             "test_users": r["test_users"]})
        for model in MODELS:
            s = scores[model]
            auc = summary(s["roc_auc"]) if s["roc_auc"] else "–"
            rows.append([name, model, auc, summary(s["f1"]),
                         f"{s['shipped']} of {args.seeds}"])
            print(f"  {name:<15} {model:<9} ROC AUC {auc}  macro F1 {summary(s['f1'])}  "
                  f"shipped {s['shipped']} of {args.seeds}", flush=True)
    write_result("tags", [{
        "title": f"{counts['users']:,} generated users, {counts['events']:,} events: the "
                 f"planted interest ({TAG}) on the test users, over {args.seeds} tag seeds",
        "columns": ["features", "model", "ROC AUC (mean ± sd)", "macro F1 (mean ± sd)",
                    "shipped"],
        "rows": rows}], time.time() - start,
        {"generated": counts, "seed": args.seed, "seeds": args.seeds, "runs": runs,
         "overrides": args.overrides})


if __name__ == "__main__":
    main()
