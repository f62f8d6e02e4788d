"""The segmenters: one interface for every ``segment.method``. A :class:`Segmenter` (the
method and its settings, for k segments) is fitted on a DataFrame of embeddings and gives
:class:`Segments`: ``k``, the ``centers`` in the space it assigns in, and ``transform``,
which adds each user's ``segment`` and ``distance`` to its centre in Spark.

K-Means is fitted by Spark MLlib over every user (best of several starts), or by
scikit-learn on a sample (on a UMAP manifold); a Gaussian mixture on a bounded sample; DEC /
IDEC refine the K-Means centres (:mod:`persona.segmentation.dec`) and assign to the nearest
refined centre. Also the choice of k."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType

from persona.errors import PersonaError
from persona.config.schema import Gmm as MixtureSpec
from persona.segmentation.dec import nearest_center
from persona.segmentation.manifold import manifold_method, sample_points, umap_spec
from persona.segmentation.metrics import CRITERIA, choose_k, internal_metrics
from persona.segmentation.profiles import centroid_distance, with_vector



def segment_method(config) -> str:
    """``segment.method``: kmeans (default), gmm (a Gaussian mixture), or dec / idec (K-Means
    refined with the encoder)."""
    return config.get("segment.method")


class Segments:
    """Fitted segments: ``k`` centres (``centers``, a (k, d) array) in the space of the array
    column ``column``; ``transform`` assigns every row of a DataFrame in Spark."""

    column = "embedding"
    centers: np.ndarray

    @property
    def k(self) -> int:
        return len(self.centers)

    @property
    def cost(self) -> float | None:
        """Sum of squared distances to the centres over the points fitted on, when the
        fit minimised it."""
        return None

    def assign(self, df: DataFrame) -> DataFrame:
        """``df`` with the int column ``segment``."""
        raise NotImplementedError

    def transform(self, df: DataFrame) -> DataFrame:
        """``df`` with ``segment`` and ``distance`` (Euclidean, to the segment's centre)."""
        return self.assign(df).withColumn(
            "distance", centroid_distance(self.column, "segment", self.centers.tolist()))


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


class MllibKMeans(Segments):
    """An MLlib K-Means model (fitted on the vector column ``vector``, or registered)."""

    def __init__(self, model: KMeansModel):
        self.model = model
        self.centers = np.array(model.clusterCenters())

    @property
    def cost(self) -> float | None:
        """Over every point for a model fitted here; None for a loaded one."""
        return float(self.model.summary.trainingCost) if self.model.hasSummary else None

    def assign(self, df: DataFrame) -> DataFrame:
        added = "vector" not in df.columns
        out = self.model.setPredictionCol("segment").transform(
            with_vector(df, self.column) if added else df)
        return out.drop("vector") if added else out


@dataclass
class NearestCenters(Segments):
    """Each point to its nearest centre (refined DEC/IDEC centres)."""

    centers: np.ndarray

    def assign(self, df: DataFrame) -> DataFrame:
        return df.withColumn("segment", nearest_center(self.column, self.centers.tolist()))


@dataclass
class SampleKMeans(NearestCenters):
    """K-Means fitted by scikit-learn on a sample of points (greedy k-means++ starts).

    Used where the points form tight, well-separated groups (a UMAP manifold): there, MLlib's
    k-means|| start often merges two groups and splits another, and more starts rarely help.
    """

    sample_cost: float = 0.0  # sum of squared distances over the sample

    @property
    def cost(self) -> float:
        return self.sample_cost


def fit_sample_kmeans(points: np.ndarray, k: int, seed: int, max_iter: int,
                      n_init: int = 1) -> SampleKMeans:
    """scikit-learn K-Means on ``points`` (a bounded sample, on the driver)."""
    from sklearn.cluster import KMeans as SampleFit

    fitted = SampleFit(k, n_init=n_init, max_iter=max_iter, random_state=seed).fit(points)
    return SampleKMeans(fitted.cluster_centers_, float(fitted.inertia_))


def mixture_spec(config) -> MixtureSpec:
    """``segment.gmm.*``: the Gaussian mixture of ``segment.method: gmm``."""
    return config.get("segment.gmm")


@dataclass
class SampleMixture(Segments):
    """A Gaussian mixture fitted by scikit-learn (EM) on a sample of points; ``assign``
    gives each point its most probable component, its centre is the component's mean.

    With one covariance shared by all components (``tied``) it is the unsupervised
    counterpart of linear discriminant analysis: points are compared in the metric of the
    spread within segments, so a direction along which every segment is spread out (how
    active users are, say) does not become a segment of its own, as it can under K-Means.
    """

    means: np.ndarray  # (k, d)
    precision_factors: np.ndarray  # (k, d, d): component k's precision is P_k P_k^T
    log_weights: np.ndarray  # (k,)
    log_likelihood: float  # mean per point of the sample

    @property
    def centers(self) -> np.ndarray:
        return self.means

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

    def assign(self, df: DataFrame) -> DataFrame:
        model = self  # a few small arrays, shipped with the UDF

        @F.pandas_udf(IntegerType())
        def _assign(batch: pd.Series) -> pd.Series:
            if batch.empty:
                return pd.Series([], dtype="int32")
            return pd.Series(model.predict(np.stack(batch.to_numpy()).astype(np.float64)))

        return df.withColumn("segment", _assign(F.col(self.column)))


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


def fit_settings(config) -> dict:
    """``segment.seed``, ``segment.max_iter`` and ``segment.n_init``, checked: the K-Means
    settings shared by the segments and the baselines they are compared with."""
    return {"seed": config.get("segment.seed"),
            "max_iter": config.get("segment.max_iter"),
            "n_init": config.get("segment.n_init")}


@dataclass
class Segmenter:
    """How ``k`` segments are fitted, in the style of a scikit-learn estimator: :meth:`fit`
    gives :class:`Segments`.

    ``method`` is kmeans or gmm. ``sample_size`` is the number of users fitted on when the
    fit runs on the driver on a bounded sample (a mixture; K-Means on a UMAP manifold); None:
    K-Means by MLlib over every user.
    """

    method: str
    k: int
    seed: int
    max_iter: int
    n_init: int
    sample_size: int | None = None
    mixture: MixtureSpec | None = None

    def draw_sample(self, space: DataFrame) -> np.ndarray | None:
        """The points of ``space`` (user_id, embedding) it is fitted on, when a sample."""
        if self.sample_size is None:
            return None
        return sample_points(space, self.sample_size, self.seed)

    def fit(self, space: DataFrame, sample: np.ndarray | None = None) -> Segments:
        """Fitted on ``sample`` (drawn from ``space`` when not given) when it fits on a
        sample, else on every row of ``space`` (its array column ``embedding``)."""
        if self.sample_size is not None and sample is None:
            sample = self.draw_sample(space)
        if self.method == "gmm":
            return fit_sample_mixture(sample, self.k, self.seed, self.n_init, self.mixture)
        if self.sample_size is not None:
            return fit_sample_kmeans(sample, self.k, self.seed, self.max_iter, self.n_init)
        vectors = space if "vector" in space.columns else with_vector(space)
        return MllibKMeans(fit_kmeans(vectors, self.k, self.seed, self.max_iter, self.n_init))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> Segmenter:
        mixture = settings.get("mixture")
        return cls(**{**settings, "mixture": MixtureSpec(**mixture) if mixture else None})


SEGMENTER_ARTIFACT = "segmenter.json"  # what segment fitted, logged in its MLflow run


def load_segmenter(uri: str) -> Segmenter:
    """The segmenter recorded (as :data:`SEGMENTER_ARTIFACT`) at an MLflow artifact URI."""
    import mlflow

    try:
        record = mlflow.artifacts.load_dict(uri)
    except Exception as exc:  # MLflow raises several types for a missing run or path
        raise PersonaError(f"cannot load the segmenter from {uri}: {exc}") from None
    return Segmenter.from_dict(record["segmenter"])


def configured_segmenter(config, k: int) -> Segmenter:
    """The segmenter of ``segment.*`` for ``k`` segments: a mixture for ``segment.method:
    gmm``, else K-Means (where DEC / IDEC start), on the UMAP sample with
    ``segment.manifold: umap``."""
    mixture = mixture_spec(config) if segment_method(config) == "gmm" else None
    if manifold_method(config) == "umap":
        sample_size = umap_spec(config).sample
    else:
        sample_size = mixture.sample if mixture else None
    return Segmenter("gmm" if mixture else "kmeans", k, sample_size=sample_size,
                     mixture=mixture, **fit_settings(config))


def segment_sizes(assigned: DataFrame) -> dict[int, int]:
    """Users per segment of a DataFrame with ``segment`` (one row per segment collected)."""
    return {int(r["segment"]): int(r["count"])
            for r in assigned.groupBy("segment").count().collect()}


def check_segments(method: str, k: int, sizes: dict[int, int]) -> None:
    """Stop unless each of the ``k`` segments ``method`` was asked for has users."""
    made = sum(1 for n in sizes.values() if n > 0)
    if made < k:
        raise PersonaError(f"{method} made {made} non-empty segment(s) of the k={k} asked "
                           "for: use a smaller segment.k or another segment.method")


@dataclass
class KSelection:
    """The chosen model, and every criterion for every k tried."""

    model: Segments
    criterion: str
    scores: dict[int, dict[str, float]]
    best_by: dict[str, int]


def select_k(space: DataFrame, candidates: list[int], criterion: str, segmenter: Segmenter,
             total: int, sample_size: int, log=None,
             sample: np.ndarray | None = None) -> KSelection:
    """Fit ``segmenter`` for each k (on ``sample`` when given) and score the segments by
    every criterion over every point of ``space`` (user_id, embedding); keep the best by
    ``criterion``."""
    models, scores = {}, {}
    for k in candidates:
        model = replace(segmenter, k=k).fit(space, sample)
        scores[k] = internal_metrics(model.transform(space), model.column, "segment", total,
                                     sample_size, segmenter.seed)
        if model.cost is not None:
            scores[k]["cost"] = model.cost
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
    chosen = selection.model.k
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
