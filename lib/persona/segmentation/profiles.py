"""Segment assignment and segment profiles (pure DataFrame functions)."""
from __future__ import annotations

from pyspark.ml.functions import array_to_vector
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, MapType

from persona.runtime.spark import column_cells


def with_vector(df: DataFrame, column: str = "embedding", output: str = "vector") -> DataFrame:
    """Add an MLlib vector column made from an array<float> column."""
    return df.withColumn(output, array_to_vector(F.col(column)))


def centroid_distance(column: str, segment: str, centers: list[list[float]]) -> Column:
    """Euclidean distance from the array ``column`` to the centre of its ``segment``."""
    table = F.array(*[F.array(*[F.lit(float(v)) for v in c]) for c in centers])
    center = F.element_at(table, F.col(segment) + 1)
    squares = F.zip_with(F.col(column), center, lambda a, b: (a - b) * (a - b))
    return F.sqrt(F.aggregate(squares, F.lit(0.0).cast("double"), lambda acc, x: acc + x))


def feature_stats(joined: DataFrame, columns: list[str]) -> tuple[list[dict], dict]:
    """Per-segment and population means (and population std) of the feature ``columns`` of
    ``joined`` (each user's ``segment`` and features), from the columns' cells
    (:func:`persona.runtime.spark.column_cells`).

    Returns ``(per_segment, population)``: per segment in segment order, ``segment``,
    ``size`` and each column's mean; ``mean_<column>`` and ``std_<column>``.
    """
    cells = column_cells(joined, {c: F.col(c) for c in columns}, keep=("segment",))
    per_segment: dict[int, dict] = {}
    parts: dict[str, list[tuple[int, float, float]]] = {}  # column -> (n, mean, var) by segment
    for r in cells.groupBy("segment", "name").agg(
            F.count(F.lit(1)).alias("size"), F.count("value").alias("n"),
            F.avg("value").alias("mean"), F.var_pop("value").alias("var")).collect():
        row = per_segment.setdefault(r["segment"], {"segment": r["segment"], "size": r["size"]})
        row[r["name"]] = r["mean"]
        column = parts.setdefault(r["name"], [])
        if r["n"]:
            column.append((r["n"], r["mean"], r["var"]))
    population = {}
    for name, segments in parts.items():
        population[f"mean_{name}"], population[f"std_{name}"] = _pooled(segments)
    return [per_segment[s] for s in sorted(per_segment)], population


def _pooled(parts: list[tuple[int, float, float]]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation of the union of groups given as (count, mean,
    population variance); None, None for no values."""
    n = sum(c for c, _, _ in parts)
    if not n:
        return None, None
    mean = sum(c * m for c, m, _ in parts) / n
    return mean, (sum(c * (v + (m - mean) ** 2) for c, m, v in parts) / n) ** 0.5


# What a suppressed segment's profile keeps: its size and what is not about its users.
PUBLIC_COLUMNS = ("segment", "size", "share", "model_version", "population_means",
                  "surrogate_fidelity")


def suppress_profiles(profiles: DataFrame, minimum: int) -> DataFrame:
    """``profiles`` with ``suppressed`` (fewer than ``minimum`` users) and, for those rows,
    every statistic of their users emptied (lists and maps empty, other values null, the
    name ``segment <id> (suppressed)``), so that readers of the table keep working."""
    small = F.col("size") < minimum
    columns = []
    for field in profiles.schema.fields:
        name, kind = field.name, field.dataType
        if name in PUBLIC_COLUMNS:
            columns.append(F.col(name))
            continue
        if name == "name":
            empty = F.concat(F.lit("segment "), F.col("segment").cast("string"),
                             F.lit(" (suppressed)"))
        elif isinstance(kind, ArrayType):
            empty = F.array().cast(kind)
        elif isinstance(kind, MapType):
            empty = F.create_map().cast(kind)
        else:
            empty = F.lit(None).cast(kind)
        columns.append(F.when(small, empty).otherwise(F.col(name)).alias(name))
    return profiles.select(*columns, small.alias("suppressed"))
