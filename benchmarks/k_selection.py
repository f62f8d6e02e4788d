"""Which criterion chooses a number of segments that is right, or useful: ``segment.k: auto``
over k = 2..10 with every criterion of ``segment.k_criterion``, on data whose groups are known
and on customers whose segments should explain what they do next.

    .venv/bin/python benchmarks/retail.py          # makes out/bench/retail-shipped/lake
    .venv/bin/python benchmarks/k_selection.py --seeds 3 \\
        --retail-lake out/bench/retail-shipped/lake

Data sets:

- ``planted``: the embeddings of a `persona run` on `persona generate` data (the lake of
  ``--planted-lake``, ``gold/user_embeddings``), five planted segments (``truth.csv``);
- ``digits``: scikit-learn's 1,797 digits, standardised, PCA to 10 dimensions, ten classes;
- ``retail`` (when given): the embeddings of Online Retail customers of a
  ``benchmarks/retail.py`` lake (features up to ``--cutoff``) and their outcomes in the
  ``--horizon`` days after it, from the lake's bronze events
  (:func:`persona.segmentation.validity.outcomes`); no known number of groups, so each
  chosen k is judged by the share of the variance of each outcome between its segments
  (eta squared, between-segment over total sum of squares).

Each data set goes through the engine's own choice of k (``select_k``, the segmenter that
``segment.*`` configures, default settings, one ``segment.seed`` per ``--seeds``), in Spark.
The run is written to benchmarks/results/ as JSON; ``benchmarks/render.py`` puts it in
docs/results.md.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import pandas as pd

from persona.config import Config
from persona.lake.tables import Lake
from persona.logs import setup_logging
from persona.privacy.pseudonyms import Ids
from persona.runtime.spark import get_spark
from persona.segmentation.metrics import CRITERIA, ari, cross_table
from persona.segmentation.models import configured_segmenter, select_k
from persona.segmentation.profiles import with_vector
from persona.segmentation.validity import outcomes
from persona.timestamps import parse_timestamp
from record import write_result

K_RANGE = [2, 10]
SPARK = {"master": "local[2]", "app_name": "persona-benchmark", "log_level": "ERROR",
         "conf": {"spark.sql.shuffle.partitions": 4, "spark.driver.memory": "4g",
                  "spark.ui.showConsoleProgress": False, "spark.sql.session.timeZone": "UTC"}}
OUTCOMES = ("log_spend", "churn")
KNOWN = {"planted": 5, "digits": 10}  # groups of the data sets that have a truth


def planted(lake_root: str, truth_path: str, ids: Ids, spark) -> tuple[np.ndarray, dict]:
    """The embeddings of the lake (a demo run: a few thousand users) and the planted truth
    (its raw ids as ``ids`` writes them in the lake)."""
    rows = (Lake(spark, lake_root).read("gold/user_embeddings")
            .select("user_id", "embedding").orderBy("user_id").collect())
    truth = pd.read_csv(truth_path, dtype={"user_id": str}).set_index("user_id")["segment"]
    truth.index = truth.index.map(ids.value)
    users = [r["user_id"] for r in rows]
    return (np.array([r["embedding"] for r in rows], dtype=np.float64),
            {"truth": truth.loc[users].to_numpy()})


def digits() -> tuple[np.ndarray, dict]:
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    data = load_digits()
    x = PCA(10, random_state=0).fit_transform(StandardScaler().fit_transform(data.data))
    return x, {"truth": data.target}


def retail(lake_root: str, cutoff: str, horizon: int, spark) -> tuple[np.ndarray, dict]:
    """The embeddings of the lake's customers and their outcomes after ``cutoff``."""
    lake = Lake(spark, lake_root)
    future = outcomes(lake.read("bronze/events"), parse_timestamp(spark, cutoff, "--cutoff"),
                      horizon, ["purchase"])
    rows = (lake.read("gold/user_embeddings").join(future, "user_id")
            .select("embedding", *OUTCOMES).orderBy("user_id").collect())
    return (np.array([r["embedding"] for r in rows], dtype=np.float64),
            {name: np.array([r[name] for r in rows], dtype=float) for name in OUTCOMES})


def eta_squared(labels: np.ndarray, y: np.ndarray) -> float:
    """Between-segment sum of squares of ``y`` over its total sum of squares."""
    total = float(((y - y.mean()) ** 2).sum())
    between = sum((labels == s).sum() * (y[labels == s].mean() - y.mean()) ** 2
                  for s in np.unique(labels))
    return float(between / total) if total else 0.0


def judge(labels: np.ndarray, known: dict) -> dict[str, float]:
    """ARI against the truth, or eta squared of every outcome."""
    if "truth" in known:
        return {"ari": ari(cross_table(known["truth"], labels))}
    return {f"eta2_{name}": eta_squared(labels, y) for name, y in known.items()}


def run_dataset(spark, name: str, x: np.ndarray, known: dict, seed: int, method: str) -> dict:
    """Every k's scores and judgement, each criterion's pick, and the seconds spent."""
    config = Config({"spark": SPARK, "segment": {"seed": seed, "method": method,
                                                 "k_range": K_RANGE}})
    space = with_vector(spark.createDataFrame(
        [(f"u{i:06d}", row.tolist()) for i, row in enumerate(x)],
        "user_id string, embedding array<double>")).persist()
    segmenter = configured_segmenter(config, K_RANGE[0])
    sample = segmenter.draw_sample(space)
    start = time.time()
    chosen = select_k(space, list(range(K_RANGE[0], K_RANGE[1] + 1)),
                      config.get("segment.k_criterion"), segmenter, total=len(x),
                      sample_size=config.get("segment.silhouette_sample"), sample=sample,
                      stability_runs=config.get("segment.stability_runs"),
                      min_stability=config.get("segment.min_stability"))
    seconds = time.time() - start
    space.unpersist()
    judged = {k: judge(model.predict(x), known) for k, model in chosen.models.items()}
    print(f"{name} seed {seed}: " + ", ".join(f"{c} {k}" for c, k in chosen.best_by.items())
          + f" ({seconds:.0f} s)", file=sys.stderr)
    return {"scores": {k: {**chosen.scores[k], **judged[k]} for k in chosen.scores},
            "best_by": chosen.best_by, "seconds": chosen.seconds}


def picks_table(results: dict[str, list[dict]]) -> dict:
    """Per data set and criterion: the k chosen with each seed, and how good it is (mean)."""
    measures = ["ari", *(f"eta2_{o}" for o in OUTCOMES)]
    rows = []
    for name, runs in results.items():
        for criterion in CRITERIA:
            picked = [r["scores"][r["best_by"][criterion]] for r in runs]
            cells = [round(statistics.mean(p[m] for p in picked), 3) if m in picked[0] else "–"
                     for m in measures]
            rows.append([name, KNOWN.get(name, "–"), criterion,
                         ", ".join(str(r["best_by"][criterion]) for r in runs), *cells])
    return {"title": "k chosen by each criterion over k = 2..10 (one per seed), ARI against "
                     "the known groups or eta² of each outcome at that k (mean over seeds)",
            "columns": ["data set", "known groups", "criterion", "k chosen", "ARI",
                        "eta² log spend", "eta² churn"],
            "rows": rows}


def curves_table(name: str, runs: list[dict]) -> dict:
    """Every criterion's curve and the judgement of every k (mean over seeds)."""
    columns = [c for c in ("silhouette", "davies_bouldin", "calinski_harabasz", "within_ss",
                           "stability", "ari", *(f"eta2_{o}" for o in OUTCOMES))
               if c in runs[0]["scores"][K_RANGE[0]]]
    rows = [[k, *(round(statistics.mean(r["scores"][k][c] for r in runs), 4)
                  for c in columns)] for k in sorted(runs[0]["scores"])]
    return {"title": f"{name}: the curves (mean over seeds)", "columns": ["k", *columns],
            "rows": rows}


def seconds_table(results: dict[str, list[dict]], sizes: dict[str, int]) -> dict:
    rows = [[name, sizes[name], round(statistics.mean(r["seconds"]["scores"] for r in runs), 1),
             round(statistics.mean(r["seconds"]["stability"] for r in runs), 1)]
            for name, runs in results.items()]
    return {"title": "Seconds over k = 2..10 (mean over seeds): fitting and scoring every k, "
                     "and the bootstrap refits of stability on top",
            "columns": ["data set", "users", "fit and score", "stability"], "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="segment.seed 7, 8, ...")
    parser.add_argument("--method", default="kmeans", choices=["kmeans", "gmm"],
                        help="segment.method")
    parser.add_argument("--planted-lake", default="out/demo/lake")
    parser.add_argument("--planted-truth", default="out/demo/data/truth.csv")
    parser.add_argument("--planted-conf", default="conf/local.yaml",
                        help="the configuration of the planted lake's run (its privacy key)")
    parser.add_argument("--retail-lake", help="the lake of a benchmarks/retail.py variant")
    parser.add_argument("--cutoff", default="2011-09-01", help="its features.as_of")
    parser.add_argument("--horizon", type=int, default=90, help="days of outcome")
    args = parser.parse_args()
    setup_logging()
    start = time.time()
    spark = get_spark(Config({"spark": SPARK}))
    ids = Ids.of(Config.load(args.planted_conf))
    data = {"planted": planted(args.planted_lake, args.planted_truth, ids, spark),
            "digits": digits()}
    if args.retail_lake:
        data["retail"] = retail(args.retail_lake, args.cutoff, args.horizon, spark)
    results = {name: [run_dataset(spark, name, x, known, 7 + s, args.method)
                      for s in range(args.seeds)] for name, (x, known) in data.items()}
    tables = [picks_table(results),
              seconds_table(results, {name: len(x) for name, (x, _) in data.items()}),
              *(curves_table(name, runs) for name, runs in results.items())]
    for spec in tables:
        print(f"\n{spec['title']}\n" + "\n".join(" | ".join(str(c) for c in row)
                                                  for row in spec["rows"]), file=sys.stderr)
    write_result("k_selection", tables, time.time() - start,
                 {"settings": {**vars(args), "k_range": K_RANGE}, "runs": results})


if __name__ == "__main__":
    main()
