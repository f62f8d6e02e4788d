"""K-Means as the engine uses it: Spark MLlib over every user (best of several starts) or
scikit-learn on a sample with every user assigned in Spark, and the choice of k."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.sql import DataFrame

from persona.transform.dec import nearest_center
from persona.transform.metrics import CRITERIA, choose_k, internal_metrics


def fit_kmeans(vectors: DataFrame, k: int, seed: int, max_iter: int, n_init: int = 1,
               features: str = "vector", prediction: str = "segment") -> KMeansModel:
    """K-Means (k-means|| start) from ``n_init`` seeds; the fit of lowest cost wins."""
    best = None
    for i in range(n_init):
        model = KMeans(k=k, seed=seed + i, maxIter=max_iter, featuresCol=features,
                       predictionCol=prediction, initMode="k-means||").fit(vectors)
        if best is None or model.summary.trainingCost < best.summary.trainingCost:
            best = model
    return best


@dataclass
class SampleKMeans:
    """K-Means fitted by scikit-learn on a sample of points (greedy k-means++ starts), applied
    to a DataFrame like an MLlib model: ``transform`` adds the index of the nearest centre.

    Used where the points form tight, well-separated groups (a UMAP manifold): there, MLlib's
    k-means|| start often merges two groups and splits another, and more starts rarely help.
    """

    centers: np.ndarray
    cost: float  # sum of squared distances over the sample
    features: str = "embedding"  # array column of the points
    prediction: str = "segment"

    def getK(self) -> int:
        return len(self.centers)

    def clusterCenters(self) -> list[np.ndarray]:
        return list(self.centers)

    def transform(self, df: DataFrame) -> DataFrame:
        return df.withColumn(self.prediction, nearest_center(self.features,
                                                             self.centers.tolist()))


def fit_sample_kmeans(points: np.ndarray, k: int, seed: int, max_iter: int,
                      n_init: int = 1) -> SampleKMeans:
    """scikit-learn K-Means on ``points`` (a bounded sample, on the driver)."""
    from sklearn.cluster import KMeans as SampleFit

    fitted = SampleFit(k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(points)
    return SampleKMeans(fitted.cluster_centers_, float(fitted.inertia_))


def training_cost(model) -> float | None:
    """Sum of squared distances to the centres: over every point for an MLlib model it
    fitted, over the sample for a :class:`SampleKMeans`; None for a loaded MLlib model."""
    if isinstance(model, SampleKMeans):
        return model.cost
    return float(model.summary.trainingCost) if model.hasSummary else None


def fit_settings(config) -> dict:
    """``segment.seed``, ``segment.max_iter`` and ``segment.n_init``, checked: the K-Means
    settings shared by the segments and the baselines they are compared with."""
    return {"seed": config.integer("segment.seed", 7),
            "max_iter": config.integer("segment.max_iter", 50, minimum=1),
            "n_init": config.integer("segment.n_init", 5, minimum=1)}


def fit_segments_model(vectors: DataFrame, k: int, seed: int, max_iter: int, n_init: int,
                       sample: np.ndarray | None = None):
    """K-Means with ``k`` centres: on ``sample`` when given, else MLlib on ``vectors``."""
    if sample is not None:
        return fit_sample_kmeans(sample, k, seed, max_iter, n_init)
    return fit_kmeans(vectors, k, seed, max_iter, n_init)


@dataclass
class KSelection:
    """The chosen model, and every criterion for every k tried."""

    model: KMeansModel | SampleKMeans
    criterion: str
    scores: dict[int, dict[str, float]]
    best_by: dict[str, int]


def select_k(vectors: DataFrame, candidates: list[int], criterion: str, seed: int,
             max_iter: int, n_init: int, total: int, sample_size: int,
             column: str = "embedding", log=None, sample: np.ndarray | None = None
             ) -> KSelection:
    """Fit K-Means for each k (:func:`fit_segments_model`) and score it by every criterion
    over every point; keep the best by ``criterion``.

    ``vectors`` has the array column ``column`` and its MLlib vector ``vector``.
    """
    models, scores = {}, {}
    for k in candidates:
        model = fit_segments_model(vectors, k, seed, max_iter, n_init, sample)
        scores[k] = internal_metrics(model.transform(vectors), column, "segment", total,
                                     sample_size, seed)
        scores[k]["cost"] = training_cost(model)
        models[k] = model
        if log:
            log("k=%d: silhouette %.4f, Davies-Bouldin %.4f, Calinski-Harabasz %.1f", k,
                scores[k]["silhouette"], scores[k]["davies_bouldin"],
                scores[k]["calinski_harabasz"])
    best_by = {c: choose_k(scores, c) for c in CRITERIA}
    return KSelection(models[best_by[criterion]], criterion, scores, best_by)


def plot_k_selection(selection: KSelection, path: str) -> None:
    """One panel per criterion against k, the chosen k marked; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(selection.scores)
    chosen = selection.model.getK()
    fig, axes = plt.subplots(1, len(CRITERIA), figsize=(4 * len(CRITERIA), 3.2))
    for ax, (name, higher) in zip(axes, CRITERIA.items()):
        ax.plot(ks, [selection.scores[k][name] for k in ks], marker="o")
        ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
        ax.set_title(f"{name.replace('_', '-')} ({'higher' if higher else 'lower'} is better)",
                     fontsize=9)
        ax.set_xlabel("k")
        ax.set_xticks(ks)
    fig.suptitle(f"k = {chosen} chosen by {selection.criterion.replace('_', '-')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
