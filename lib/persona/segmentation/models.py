"""The segment models the engine fits: K-Means by Spark MLlib over every user (best of
several starts) or by scikit-learn on a sample, a Gaussian mixture on a sample, each applied
to every user in Spark; and the choice of k."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType

from persona.segmentation.dec import nearest_center
from persona.segmentation.metrics import CRITERIA, choose_k, internal_metrics


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


COVARIANCES = ("tied", "full", "diag", "spherical")


@dataclass
class MixtureSpec:
    """``segment.gmm.*``: the Gaussian mixture of ``segment.method: gmm``."""

    covariance: str = "tied"  # one covariance shared by every segment; or full, diag, spherical
    max_iter: int = 300  # EM iterations per start
    sample: int = 100_000  # users it is fitted on


def mixture_spec(config) -> MixtureSpec:
    defaults = MixtureSpec()
    return MixtureSpec(
        covariance=config.choice("segment.gmm.covariance", list(COVARIANCES),
                                 defaults.covariance),
        max_iter=config.integer("segment.gmm.max_iter", defaults.max_iter, minimum=1),
        sample=config.integer("segment.gmm.sample", defaults.sample, minimum=10))


@dataclass
class SampleMixture:
    """A Gaussian mixture fitted by scikit-learn (EM) on a sample of points, applied to a
    DataFrame like an MLlib model: ``transform`` adds each point's most probable component.

    With one covariance shared by all components (``tied``) it is the unsupervised
    counterpart of linear discriminant analysis: points are compared in the metric of the
    spread within segments, so a direction along which every segment is spread out (how
    active users are, say) does not become a segment of its own, as it can under K-Means.
    """

    means: np.ndarray  # (k, d)
    precision_factors: np.ndarray  # (k, d, d): component k's precision is P_k P_k^T
    log_weights: np.ndarray  # (k,)
    log_likelihood: float  # mean per point of the sample
    features: str = "embedding"  # array column of the points
    prediction: str = "segment"

    def getK(self) -> int:
        return len(self.means)

    def clusterCenters(self) -> list[np.ndarray]:
        return list(self.means)

    def log_scores(self, points: np.ndarray) -> np.ndarray:
        """log(weight_k N(x | mean_k, cov_k)) for every point and component, up to a
        constant shared by all."""
        out = np.empty((len(points), len(self.means)))
        for k, (mean, factor) in enumerate(zip(self.means, self.precision_factors)):
            y = (points - mean) @ factor
            out[:, k] = (self.log_weights[k] + np.log(np.diag(factor)).sum()
                         - 0.5 * (y * y).sum(axis=1))
        return out

    def predict(self, points: np.ndarray) -> np.ndarray:
        return np.argmax(self.log_scores(points), axis=1).astype(np.int32)

    def transform(self, df: DataFrame) -> DataFrame:
        model = self  # a few small arrays, shipped with the UDF

        @F.pandas_udf(IntegerType())
        def _assign(batch: pd.Series) -> pd.Series:
            if batch.empty:
                return pd.Series([], dtype="int32")
            return pd.Series(model.predict(np.stack(batch.to_numpy()).astype(np.float64)))

        return df.withColumn(self.prediction, _assign(F.col(self.features)))


def fit_sample_mixture(points: np.ndarray, k: int, seed: int, n_init: int,
                       spec: MixtureSpec) -> SampleMixture:
    """scikit-learn's GaussianMixture (EM) on ``points`` (a bounded sample, on the driver).

    EM is started ``n_init`` times from K-Means on the points as they are and ``n_init``
    times from K-Means on the points sphered by their overall covariance; the fit of highest
    likelihood wins. The likelihood does not depend on the sphering, the K-Means start does:
    where every segment is spread far along one direction, K-Means cuts along it, and EM
    started there stays in that cut.
    """
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    points = np.asarray(points, dtype=np.float64)
    center = points.mean(axis=0)
    covariance = np.atleast_2d(np.cov(points, rowvar=False))
    try:  # sphere: (x - center) @ W has identity covariance, W W^T = covariance^-1
        sphere = np.linalg.cholesky(np.linalg.inv(covariance))
    except np.linalg.LinAlgError:  # a constant or redundant dimension: no sphered start
        sphere = None
    best = None
    # One BLAS thread: threaded sums differ in the last bits from run to run, and a re-run
    # must give the same model (its version is a hash of the means).
    with threadpool_limits(limits=1):
        for transform in (np.eye(len(center)), sphere):
            if transform is None:
                continue
            moved = (points - center) @ transform
            fitted = GaussianMixture(k, covariance_type=spec.covariance,
                                     max_iter=spec.max_iter, n_init=n_init,
                                     random_state=seed).fit(moved)
            score = fitted.score(moved) + np.log(np.diag(transform)).sum()
            if best is None or score > best[0]:
                best = score, fitted, transform
    score, fitted, transform = best
    return mixture_from_fit(fitted, center, transform, score)


def mixture_from_fit(fitted, center: np.ndarray, transform: np.ndarray,
                     log_likelihood: float) -> SampleMixture:
    """The :class:`SampleMixture` of a scikit-learn GaussianMixture fitted on
    ``(x - center) @ transform``, in the coordinates of x."""
    factors = fitted.precisions_cholesky_
    if fitted.covariance_type == "tied":
        factors = np.repeat(factors[None], len(fitted.means_), axis=0)
    elif fitted.covariance_type == "diag":
        factors = np.stack([np.diag(f) for f in factors])
    elif fitted.covariance_type == "spherical":
        factors = np.stack([f * np.eye(len(center)) for f in factors])
    # (x - mean_k) @ (transform @ P_k) = (z - mean_z_k) @ P_k, with z = (x - center) @ transform
    means = fitted.means_ @ np.linalg.inv(transform) + center
    return SampleMixture(means, transform @ factors, np.log(fitted.weights_),
                         float(log_likelihood))


def training_cost(model) -> float | None:
    """Sum of squared distances to the centres: over every point for an MLlib model it
    fitted, over the sample for a :class:`SampleKMeans`; None for a loaded MLlib model and
    for a mixture (its fit is measured by likelihood)."""
    if isinstance(model, SampleKMeans):
        return model.cost
    if isinstance(model, SampleMixture):
        return None
    return float(model.summary.trainingCost) if model.hasSummary else None


def fit_settings(config) -> dict:
    """``segment.seed``, ``segment.max_iter`` and ``segment.n_init``, checked: the K-Means
    settings shared by the segments and the baselines they are compared with."""
    return {"seed": config.integer("segment.seed", 7),
            "max_iter": config.integer("segment.max_iter", 50, minimum=1),
            "n_init": config.integer("segment.n_init", 5, minimum=1)}


def fit_segments_model(vectors: DataFrame, k: int, seed: int, max_iter: int, n_init: int,
                       sample: np.ndarray | None = None, mixture: MixtureSpec | None = None):
    """``k`` segments: a Gaussian mixture on ``sample`` when ``mixture`` is given, else
    K-Means, on ``sample`` when given, else by MLlib on ``vectors``."""
    if mixture is not None:
        return fit_sample_mixture(sample, k, seed, n_init, mixture)
    if sample is not None:
        return fit_sample_kmeans(sample, k, seed, max_iter, n_init)
    return fit_kmeans(vectors, k, seed, max_iter, n_init)


@dataclass
class KSelection:
    """The chosen model, and every criterion for every k tried."""

    model: KMeansModel | SampleKMeans | SampleMixture
    criterion: str
    scores: dict[int, dict[str, float]]
    best_by: dict[str, int]


def select_k(vectors: DataFrame, candidates: list[int], criterion: str, seed: int,
             max_iter: int, n_init: int, total: int, sample_size: int,
             column: str = "embedding", log=None, sample: np.ndarray | None = None,
             mixture: MixtureSpec | None = None) -> KSelection:
    """Fit segments for each k (:func:`fit_segments_model`) and score them by every
    criterion over every point; keep the best by ``criterion``.

    ``vectors`` has the array column ``column`` and its MLlib vector ``vector``.
    """
    models, scores = {}, {}
    for k in candidates:
        model = fit_segments_model(vectors, k, seed, max_iter, n_init, sample, mixture)
        scores[k] = internal_metrics(model.transform(vectors), column, "segment", total,
                                     sample_size, seed)
        cost = training_cost(model)
        if cost is not None:
            scores[k]["cost"] = cost
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
