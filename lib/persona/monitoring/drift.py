"""Feature drift: the population stability index (PSI) of each feature against the
distribution it had when the models in use were trained.

The training distribution is kept as a small reference table (feature, bin, upper edge,
share): bins are quantiles of the training data, so each holds about the same share of
training users, and users without a value get a bin of their own. The current data is
binned on the same edges and PSI = sum over bins of (current - reference) * ln(current /
reference), shares floored at :data:`SHARE_FLOOR`. Everything is computed by Spark; the
driver holds only the edges (features x bins numbers).

Spark does the binning rather than a drift library: the libraries that compute PSI
(evidently, nannyml, alibi-detect) take pandas frames, which would bring every user's row
to the driver.
"""
from __future__ import annotations

from pyspark.sql import DataFrame, Window
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

from persona.runtime.spark import column_cells

DRIFT_TABLE = "gold/drift"
# Each segment's share and mean distance to its centre when its model was fitted.
SEGMENT_REFERENCE_TABLE = "meta/segment_reference"
DRIFT_COLUMNS = "run_id string, computed_at timestamp, kind string, name string, value double"

# Quantile bins of the training distribution per feature.
BINS = 10
# Shares below this are taken as this: an empty bin would make PSI infinite.
SHARE_FLOOR = 1e-4
# The bin of users without a value.
NULL_BIN = -1

REFERENCE_SCHEMA = StructType([
    StructField("name", StringType()), StructField("bin", IntegerType()),
    StructField("upper_edge", DoubleType()), StructField("share", DoubleType())])


def quantile_edges(df: DataFrame, columns: list[str], bins: int = BINS) -> dict[str, list[float]]:
    """The inner edges of ``bins`` quantile bins of each column (ties merged, so a column
    with few distinct values gets fewer bins)."""
    probabilities = [i / bins for i in range(1, bins)]
    cast = df.select([F.col(c).cast("double").alias(c) for c in columns])
    quantiles = cast.approxQuantile(columns, probabilities, 0.001)
    return {c: sorted(set(q)) for c, q in zip(columns, quantiles)}


def bin_shares(df: DataFrame, edges: dict[str, list[float]]) -> DataFrame:
    """(name, bin, share) of each column of ``df`` binned on ``edges``: bin i holds the
    values in (edge[i-1], edge[i]], the last bin those above every edge; a null goes to
    :data:`NULL_BIN`. One pass over the cells of ``df``
    (:func:`persona.runtime.spark.column_cells`) with the edges as one constant, so that the
    generated code stays small however many columns there are."""
    names = list(edges)
    cells = column_cells(df, {c: F.col(c) for c in names})
    inner = F.element_at(F.array(*[F.array(*[F.lit(float(e)) for e in edges[c]])
                                   if edges[c] else F.array().cast("array<double>")
                                   for c in names]), F.col("position") + 1)
    above = F.size(F.filter(inner, lambda e: F.col("value") > e))
    binned = cells.select(
        "name", F.when(F.col("value").isNull(), F.lit(NULL_BIN)).otherwise(above).cast("int")
        .alias("bin"))
    counts = binned.groupBy("name", "bin").count()
    return (counts.withColumn("share", F.col("count") / F.sum("count").over(
        Window.partitionBy("name"))).drop("count"))


def reference(df: DataFrame, columns: list[str], bins: int = BINS) -> DataFrame:
    """The reference table of ``df``'s ``columns``: REFERENCE_SCHEMA rows, one per
    non-empty bin, with each bin's upper edge (null for the last bin and the null bin)."""
    edges = quantile_edges(df, columns, bins)
    spark = df.sparkSession
    uppers = spark.createDataFrame(
        [(c, i, float(e)) for c, inner in edges.items() for i, e in enumerate(inner)],
        "name string, bin int, upper_edge double")
    shares = bin_shares(df, edges)
    return (shares.join(uppers, ["name", "bin"], "left")
            .select(*[F.col(f.name).cast(f.dataType) for f in REFERENCE_SCHEMA.fields]))


def reference_edges(ref: DataFrame) -> dict[str, list[float]]:
    """The inner edges of every feature of a reference table (a small collect)."""
    edges: dict[str, list[float]] = {}
    for row in ref.select("name").distinct().collect():
        edges[row["name"]] = []
    for row in ref.where(F.col("upper_edge").isNotNull()).orderBy("name", "bin").collect():
        edges[row["name"]].append(row["upper_edge"])
    return edges


def psi(ref: DataFrame, current: DataFrame) -> DataFrame:
    """(name, psi) of each feature of the reference: ``current`` is (name, bin, share) from
    :func:`bin_shares` on the reference's edges. A bin present on one side only counts with
    the floor share on the other."""
    floor = F.lit(SHARE_FLOOR)
    joined = (ref.select("name", "bin", F.col("share").alias("r"))
              .join(current.select("name", "bin", F.col("share").alias("c")),
                    ["name", "bin"], "full_outer")
              .select("name", F.greatest(F.coalesce("r", floor), floor).alias("r"),
                      F.greatest(F.coalesce("c", floor), floor).alias("c")))
    return joined.groupBy("name").agg(
        F.sum((F.col("c") - F.col("r")) * F.log(F.col("c") / F.col("r"))).alias("psi"))


def share_changes(reference: dict[int, float], current: dict[int, float]) -> dict[int, float]:
    """Each segment's share now minus its share at the fit (a segment on one side only has
    share 0 on the other)."""
    return {i: current.get(i, 0.0) - reference.get(i, 0.0)
            for i in sorted(set(reference) | set(current))}
