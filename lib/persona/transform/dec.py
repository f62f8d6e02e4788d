"""Deep embedded clustering math (Xie et al. 2016): soft assignments, the sharpened target
distribution, and the final hard assignment of every user in Spark."""
from __future__ import annotations

import numpy as np
from pyspark.sql import Column
from pyspark.sql import functions as F


def soft_assignment(z: np.ndarray, centers: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """q_ij: Student's t kernel between embedding i and centre j, normalised over j."""
    d2 = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    q = (1.0 + d2 / alpha) ** (-(alpha + 1.0) / 2.0)
    return q / q.sum(axis=1, keepdims=True)


def target_distribution(q: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """p_ij ∝ q_ij² / f_j, where f_j = Σ_i q_ij over the whole data set (all ranks)."""
    weight = q ** 2 / frequencies[None, :]
    return weight / weight.sum(axis=1, keepdims=True)


def label_change(previous: np.ndarray | None, current: np.ndarray) -> int:
    """How many points changed cluster since the last update (all of them the first time)."""
    return len(current) if previous is None else int((previous != current).sum())


def nearest_center(column: str, centers: list[list[float]]) -> Column:
    """0-based index of the centre nearest to the array ``column`` (the argmax of q)."""
    def squared(center):
        diffs = F.zip_with(F.col(column), F.array(*[F.lit(float(v)) for v in center]),
                           lambda a, b: (a - b) * (a - b))
        return F.aggregate(diffs, F.lit(0.0).cast("double"), lambda acc, x: acc + x)

    # Structs compare field by field: the smallest (distance, index) pair wins.
    pairs = F.array(*[F.struct(squared(c).alias("d"), F.lit(j).alias("j"))
                      for j, c in enumerate(centers)])
    return F.array_min(pairs).getField("j").cast("int")
