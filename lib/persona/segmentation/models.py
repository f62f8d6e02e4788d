"""The segmenters: one interface for every ``segment.method``. A :class:`Segmenter` (the
method and its settings, for k segments) is fitted on a DataFrame of embeddings and gives
:class:`Segments`: ``k``, the ``centers`` in the space it assigns in, and ``transform``,
which adds each user's ``segment`` and ``distance`` to its centre in Spark.

K-Means is fitted by Spark MLlib over every user (best of several starts), or by
scikit-learn on a sample (on a UMAP manifold); a Gaussian mixture on a bounded sample; DEC /
IDEC refine the K-Means centres (:mod:`persona.segmentation.dec`) and assign to the nearest
refined centre. Also the choice of k."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
from pyspark import inheritable_thread_target
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType

from persona.errors import PersonaError
from persona.config.schema import Gmm as MixtureSpec
from persona.segmentation.dec import nearest_center
from persona.segmentation.manifold import manifold_method, sample_points, umap_spec
from persona.segmentation.metrics import (CRITERIA, KNEE_FALLBACK, bootstrap_stability,
                                          choose_k, internal_metrics, knee)
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

    def predict(self, points: np.ndarray) -> np.ndarray:
        """The segment of each row of ``points`` (a bounded array on the driver), as
        ``assign`` gives it: the nearest centre."""
        d2 = ((points * points).sum(axis=1)[:, None] - 2.0 * points @ self.centers.T
              + (self.centers * self.centers).sum(axis=1)[None, :])
        return np.argmin(d2, axis=1).astype(np.int32)

    def transform(self, df: DataFrame) -> DataFrame:
        """``df`` with ``segment`` and ``distance`` (Euclidean, to the segment's centre)."""
        return self.assign(df).withColumn(
            "distance", centroid_distance(self.column, "segment", self.centers.tolist()))


# K-Means starts fitted at the same time: each is a chain of small jobs, and Spark runs the
# tasks of concurrent jobs side by side.
CONCURRENT_STARTS = 8


def fit_kmeans(vectors: DataFrame, k: int, seed: int, max_iter: int, n_init: int = 1,
               features: str = "vector", prediction: str = "segment") -> KMeansModel:
    """K-Means (k-means|| start) from ``n_init`` seeds, fitted concurrently; the fit of lowest
    cost wins (of equal costs, the first seed's)."""
    def start(i: int) -> KMeansModel:
        return KMeans(k=k, seed=seed + i, maxIter=max_iter, featuresCol=features,
                      predictionCol=prediction, initMode="k-means||").fit(vectors)

    with ThreadPoolExecutor(min(n_init, CONCURRENT_STARTS)) as pool:
        models = list(pool.map(inheritable_thread_target(start), range(n_init)))
    return min(models, key=lambda model: model.summary.trainingCost)


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
        if self.sample_size is not None:
            return self.fit_points(self.draw_sample(space) if sample is None else sample)
        vectors = space if "vector" in space.columns else with_vector(space)
        return MllibKMeans(fit_kmeans(vectors, self.k, self.seed, self.max_iter, self.n_init))

    def fit_points(self, points: np.ndarray) -> Segments:
        """Fitted on the array ``points`` on the driver: the mixture, or scikit-learn
        K-Means (the same objective as MLlib's)."""
        if self.method == "gmm":
            return fit_sample_mixture(points, self.k, self.seed, self.n_init, self.mixture)
        return fit_sample_kmeans(points, self.k, self.seed, self.max_iter, self.n_init)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, settings: dict) -> Segmenter:
        mixture = settings.get("mixture")
        return cls(**{**settings, "mixture": MixtureSpec(**mixture) if mixture else None})


SEGMENTER_ARTIFACT = "segmenter.json"  # what segment fitted, logged in its MLflow run
# The choice of k, logged in the same run: every criterion's curve and picks, and its plot.
K_SELECTION_JSON = "k_selection.json"
K_SELECTION_PNG = "k_selection.png"


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
    """The segments fitted for every k tried (``models``; for the chosen k, the segmenter's
    own fit), every criterion's curve over them (``scores``), the k each criterion picks
    (``best_by``), the stability threshold, and the seconds spent fitting and scoring
    (``scores``), refitting on bootstrap resamples (``stability``) and fitting the chosen k
    over every user (``fit``, after a sweep on a sample)."""

    models: dict[int, Segments]
    criterion: str
    scores: dict[int, dict[str, float]]
    best_by: dict[str, int]
    min_stability: float | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def model(self) -> Segments:
        """The segments of the k ``criterion`` picks."""
        return self.models[self.best_by[self.criterion]]


def select_k(space: DataFrame, candidates: list[int], criterion: str, segmenter: Segmenter,
             total: int, sample_size: int, log=None, sample: np.ndarray | None = None,
             stability_runs: int = 0, min_stability: float | None = None) -> KSelection:
    """Fit ``segmenter`` for each k, score the segments over every point of ``space``
    (user_id, embedding) and keep the k ``criterion`` picks.

    A segmenter that fits on a sample is fitted on ``sample`` when given. K-Means by MLlib
    (over every user) is fitted for each k by scikit-learn (the same objective) on a bounded
    sample of at most ``sample_size`` points, the first of ``sample`` else drawn from
    ``space``; only the chosen k is then fitted by MLlib, over every user, as a fixed
    ``segment.k`` would be. With ``stability_runs``, also each k's bootstrap stability: the
    sweep's segmenter refitted on that many resamples of the same bounded sample."""
    if CRITERIA[criterion].rule == "stable" and not stability_runs:
        raise PersonaError(f"segment.k_criterion={criterion} needs segment.stability_runs "
                           ">= 1")
    on_sample = segmenter.sample_size is None
    points = None
    if stability_runs or on_sample:
        points = (sample[:sample_size] if sample is not None
                  else sample_points(space, sample_size, segmenter.seed)).astype(np.float64)
    sweep = replace(segmenter, sample_size=len(points)) if on_sample else segmenter
    models, scores, seconds = {}, {}, {"scores": 0.0, "stability": 0.0}
    for k in candidates:
        start = time.perf_counter()
        model = replace(sweep, k=k).fit(space, points if on_sample else sample)
        scores[k] = internal_metrics(model.transform(space), model.column, "segment", total,
                                     sample_size, segmenter.seed)
        if model.cost is not None:
            scores[k]["cost"] = model.cost
        models[k] = model
        seconds["scores"] += time.perf_counter() - start
        if stability_runs:
            start = time.perf_counter()
            scores[k]["stability"] = bootstrap_stability(
                points, model.predict(points),
                lambda resample, run, k=k: replace(
                    sweep, k=k, seed=segmenter.seed + 1000 * (run + 1)
                ).fit_points(resample),
                stability_runs, segmenter.seed)
            seconds["stability"] += time.perf_counter() - start
        if log:
            log("k=%d: %s", k, ", ".join(f"{name} {value:.4g}"
                                         for name, value in scores[k].items()))
    best_by = {c: choose_k(scores, c, min_stability) for c, spec in CRITERIA.items()
               if spec.curve in scores[candidates[0]]}
    if log and CRITERIA[criterion].rule == "knee" and knee(
            {k: s[CRITERIA[criterion].curve] for k, s in scores.items()}) is None:
        log("%s: no knee in the within-segment sum of squares over %d value(s) of k (it needs "
            "3 or more, on a bending curve): k chosen by %s", criterion, len(candidates),
            KNEE_FALLBACK)
    if on_sample:
        start = time.perf_counter()
        k = best_by[criterion]
        models[k] = replace(segmenter, k=k).fit(space)
        seconds["fit"] = time.perf_counter() - start
    return KSelection(models, criterion, scores, best_by, min_stability, seconds)


# How each rule reads its curve, for the titles of the plot.
RULE_TITLES = {"max": "higher is better", "min": "lower is better",
               "knee": "the knee", "stable": "stable up to k"}
CURVE_TITLES = {"within_ss": "within-segment sum of squares"}


def plot_k_selection(selection: KSelection, path: str) -> None:
    """One panel per criterion: its curve against k, the k it picks as a filled dot (and
    the stability threshold), the chosen k as a dashed line; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(selection.scores)
    chosen = selection.model.k
    names = list(selection.best_by)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3.2 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names):
        spec = CRITERIA[name]
        ax.plot(ks, [selection.scores[k][spec.curve] for k in ks], marker="o")
        pick = selection.best_by[name]
        ax.plot([pick], [selection.scores[pick][spec.curve]], marker="o", markersize=11,
                color="tab:orange", zorder=3, alpha=0.8)
        if spec.rule == "stable" and selection.min_stability is not None:
            ax.axhline(selection.min_stability, color="grey", linestyle=":", linewidth=1)
        ax.axvline(chosen, color="tab:red", linestyle="--", linewidth=1)
        curve = "" if spec.curve == name else f": {CURVE_TITLES[spec.curve]}"
        ax.set_title(f"{name.replace('_', '-')}{curve} ({RULE_TITLES[spec.rule]}) → k = {pick}",
                     fontsize=9)
        ax.set_xlabel("k")
        ax.set_xticks(ks)
    fig.suptitle(f"k = {chosen} chosen by {selection.criterion.replace('_', '-')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
