"""Clustering quality (pure functions).

Internal metrics need no labels: Davies-Bouldin and Calinski-Harabasz are exact, from two
Spark aggregations over every point; the silhouette (Euclidean, as in the literature) is
O(n²), so it is computed on a bounded random sample of at most ``sample_size`` points
collected to the driver. External metrics compare segments with known labels from the
contingency table (one small Spark aggregation): ACC after the best one-to-one matching of
segments to labels (Hungarian algorithm), NMI (arithmetic normalisation) and ARI.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pyspark.ml.functions import array_to_vector
from pyspark.ml.stat import Summarizer
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, DoubleType, IntegerType, StructField, StructType
from scipy.optimize import linear_sum_assignment

# criterion -> True when larger is better
CRITERIA = {"silhouette": True, "davies_bouldin": False, "calinski_harabasz": True}


@dataclass
class ClusterStats:
    """Per cluster: label, size, centroid, mean distance to it and sum of squared distances."""

    labels: list[int]
    sizes: np.ndarray
    centers: np.ndarray
    mean_distance: np.ndarray
    sse: np.ndarray


def cluster_stats(points: DataFrame, column: str, label: str) -> ClusterStats:
    """Centroids (first pass), then distances of every point to its centroid (second pass)."""
    means = (points.select(F.col(label).cast("int").alias("_label"),
                           array_to_vector(F.col(column)).alias("_v"))
             .groupBy("_label")
             .agg(F.count(F.lit(1)).alias("n"), Summarizer.mean(F.col("_v")).alias("c"))
             .orderBy("_label").collect())
    labels = [int(r["_label"]) for r in means]
    centers = np.array([r["c"].toArray() for r in means])
    schema = StructType([StructField("_label", IntegerType()),
                         StructField("_c", ArrayType(DoubleType()))])
    table = points.sparkSession.createDataFrame(
        [(lab, [float(v) for v in c]) for lab, c in zip(labels, centers)], schema)
    squares = F.zip_with(F.col(column), F.col("_c"), lambda a, b: (a - b) * (a - b))
    dist = F.sqrt(F.aggregate(squares, F.lit(0.0).cast("double"), lambda acc, x: acc + x))
    spread = {r["_label"]: r for r in (
        points.select(F.col(label).cast("int").alias("_label"), column)
        .join(F.broadcast(table), "_label")
        .select("_label", dist.alias("_d"))
        .groupBy("_label")
        .agg(F.avg("_d").alias("mean_d"), F.sum(F.col("_d") * F.col("_d")).alias("sse"))
        .collect())}
    return ClusterStats(labels, np.array([r["n"] for r in means], dtype=float), centers,
                        np.array([spread[lab]["mean_d"] for lab in labels]),
                        np.array([spread[lab]["sse"] for lab in labels]))


def davies_bouldin(stats: ClusterStats) -> float:
    """Mean over clusters of the worst (s_i + s_j) / |c_i - c_j|; lower is better."""
    k = len(stats.labels)
    if k < 2:
        raise ValueError("Davies-Bouldin needs at least 2 clusters")
    gaps = np.linalg.norm(stats.centers[:, None, :] - stats.centers[None, :, :], axis=2)
    gaps[gaps == 0] = np.inf
    ratios = (stats.mean_distance[:, None] + stats.mean_distance[None, :]) / gaps
    np.fill_diagonal(ratios, -np.inf)
    return float(np.mean(ratios.max(axis=1)))


def calinski_harabasz(stats: ClusterStats) -> float:
    """Between-cluster over within-cluster dispersion, each per degree of freedom."""
    k, n = len(stats.labels), float(stats.sizes.sum())
    if k < 2 or n <= k:
        raise ValueError("Calinski-Harabasz needs 2 <= clusters < points")
    overall = (stats.sizes[:, None] * stats.centers).sum(axis=0) / n
    between = float((stats.sizes * ((stats.centers - overall) ** 2).sum(axis=1)).sum())
    within = float(stats.sse.sum())
    return 1.0 if within == 0 else between * (n - k) / (within * (k - 1))


def sample_points(points: DataFrame, column: str, label: str, sample_size: int, total: int,
                  seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``sample_size`` (vector, label) pairs drawn uniformly with ``seed``."""
    fraction = min(1.0, 1.2 * sample_size / max(total, 1))
    rows = (points.select(column, label).sample(fraction=fraction, seed=seed)
            .limit(sample_size).collect())
    x = np.array([r[column] for r in rows], dtype=np.float64)
    return x, np.array([int(r[label]) for r in rows])


def silhouette(x: np.ndarray, labels: np.ndarray) -> float:
    """Mean Euclidean silhouette; points alone in their cluster count 0 (as in scikit-learn).

    Distances are computed in blocks of rows, about 10 million at a time."""
    uniq, y = np.unique(labels, return_inverse=True)
    if not 2 <= len(uniq) < len(x):
        raise ValueError("the silhouette needs 2 <= clusters < points")
    sizes = np.bincount(y, minlength=len(uniq)).astype(float)
    onehot = np.eye(len(uniq))[y]
    norms = (x * x).sum(axis=1)
    scores = np.empty(len(x))
    chunk = max(1, 10_000_000 // len(x))
    for start in range(0, len(x), chunk):
        block = slice(start, start + chunk)
        d2 = norms[block, None] + norms[None, :] - 2.0 * x[block] @ x.T
        sums = np.sqrt(np.maximum(d2, 0.0)) @ onehot  # distance sum to each cluster
        own = y[block]
        rows = np.arange(len(own))
        denom = sizes[own] - 1
        a = np.divide(sums[rows, own], denom, out=np.zeros(len(own)), where=denom > 0)
        other = sums / sizes
        other[rows, own] = np.inf
        b = other.min(axis=1)
        s = np.where(denom > 0, (b - a) / np.maximum(a, b), 0.0)
        scores[block] = np.nan_to_num(s)
    return float(scores.mean())


def internal_metrics(points: DataFrame, column: str, label: str, total: int,
                     sample_size: int, seed: int) -> dict[str, float]:
    """Silhouette (on a sample), Davies-Bouldin and Calinski-Harabasz (on every point)."""
    stats = cluster_stats(points, column, label)
    x, y = sample_points(points, column, label, sample_size, total, seed)
    return {"silhouette": silhouette(x, y), "davies_bouldin": davies_bouldin(stats),
            "calinski_harabasz": calinski_harabasz(stats)}


def contingency(df: DataFrame, truth: str, predicted: str) -> np.ndarray:
    """Counts of (truth label, predicted segment) pairs: rows are labels, columns segments."""
    rows = (df.where(F.col(truth).isNotNull() & F.col(predicted).isNotNull())
            .groupBy(F.col(truth).cast("string").alias("t"), F.col(predicted).alias("p"))
            .count().collect())
    labels = sorted({r["t"] for r in rows})
    segments = sorted({r["p"] for r in rows})
    table = np.zeros((len(labels), len(segments)), dtype=np.int64)
    for r in rows:
        table[labels.index(r["t"]), segments.index(r["p"])] = r["count"]
    return table


def accuracy(table: np.ndarray) -> float:
    """Share of points whose segment maps to their label under the best one-to-one matching."""
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum())


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def nmi(table: np.ndarray) -> float:
    """Mutual information over the arithmetic mean of the two entropies."""
    n = table.sum()
    a, b = table.sum(axis=1), table.sum(axis=0)
    nz = table > 0
    outer = np.outer(a, b)[nz].astype(float)
    mi = float((table[nz] / n * np.log(table[nz] * n / outer)).sum())
    mean_h = (_entropy(a) + _entropy(b)) / 2
    return 1.0 if mean_h == 0 else max(mi, 0.0) / mean_h


def ari(table: np.ndarray) -> float:
    """Adjusted Rand index, from the pair confusion counts (exact integers)."""
    n = int(table.sum())
    squares = int((table.astype(object) ** 2).sum())
    same_segment = sum(int(v) ** 2 for v in table.sum(axis=0)) - squares
    same_label = sum(int(v) ** 2 for v in table.sum(axis=1)) - squares
    both = squares - n
    neither = n * n - same_segment - same_label - squares
    if same_segment == 0 and same_label == 0:
        return 1.0
    return 2.0 * (both * neither - same_label * same_segment) / (
        (both + same_label) * (same_label + neither) + (both + same_segment) * (same_segment + neither))


def external_metrics(table: np.ndarray) -> dict[str, float]:
    return {"acc": accuracy(table), "nmi": nmi(table), "ari": ari(table)}


def choose_k(scores: dict[int, dict[str, float]], criterion: str) -> int:
    """The k with the best ``criterion`` (ties: the smallest k)."""
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}")
    sign = 1.0 if CRITERIA[criterion] else -1.0
    return min(scores, key=lambda k: (-sign * scores[k][criterion], k))
