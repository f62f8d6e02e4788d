"""Segment assignment and segment profiles (pure DataFrame functions)."""
from __future__ import annotations

from pyspark.ml.functions import array_to_vector
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def with_vector(df: DataFrame, column: str = "embedding", output: str = "vector") -> DataFrame:
    """Add an MLlib vector column made from an array<float> column."""
    return df.withColumn(output, array_to_vector(F.col(column)))


def centroid_distance(column: str, segment: str, centers: list[list[float]]) -> Column:
    """Euclidean distance from the array ``column`` to the centre of its ``segment``."""
    table = F.array(*[F.array(*[F.lit(float(v)) for v in c]) for c in centers])
    center = F.element_at(table, F.col(segment) + 1)
    squares = F.zip_with(F.col(column), center, lambda a, b: (a - b) * (a - b))
    return F.sqrt(F.aggregate(squares, F.lit(0.0).cast("double"), lambda acc, x: acc + x))


def feature_stats(features: DataFrame, segments: DataFrame, columns: list[str]):
    """Per-segment and population means (and population std) of the feature columns.

    Returns ``(per_segment, population)``: small results (k rows and one row).
    """
    joined = segments.select("user_id", "segment").join(features, "user_id")
    per_segment = joined.groupBy("segment").agg(
        F.count(F.lit(1)).alias("size"), *[F.avg(c).alias(c) for c in columns])
    population = joined.agg(
        *[F.avg(c).alias(f"mean_{c}") for c in columns],
        *[F.stddev_pop(c).alias(f"std_{c}") for c in columns])
    return per_segment, population
