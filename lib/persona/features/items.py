"""The items group: which items a user chose, as the user's factors of an implicit-feedback
ALS (Spark MLlib) on the user x item interaction counts (pure DataFrame functions).

Users who choose the same items get near factors even when every aggregate of their
behaviour (activity, spend, categories) is alike. ALS needs integer ids: users and items
are numbered in sorted order (a distributed sort and ``zipWithIndex``, nothing brought to
the driver), so that a re-run on the same events with the same seed gives the same factors.
"""
from __future__ import annotations

from pyspark.ml.recommendation import ALS
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import LongType, StringType, StructField, StructType

# ALS settings: confidence of an interaction count c is 1 + ALPHA * c (Hu et al. 2008).
ALPHA = 1.0
REG_PARAM = 0.1
MAX_ITER = 10


def item_columns(rank: int) -> list[str]:
    """``item_0 .. item_{rank-1}``."""
    return [f"item_{i}" for i in range(rank)]


def interaction_counts(events: DataFrame, as_of) -> DataFrame:
    """``(user_id, item_id, interactions)``: each user's events per item at or before
    ``as_of`` (events without an item are left out)."""
    return (events.where((F.col("event_time") <= F.lit(as_of)) & F.col("item_id").isNotNull())
            .groupBy("user_id", "item_id").agg(F.count(F.lit(1)).cast("float")
                                                .alias("interactions")))


def _numbered(df: DataFrame, column: str, number: str) -> DataFrame:
    """``(column, number)``: the distinct values of ``column``, numbered 0, 1, ... in order."""
    values = df.select(column).distinct().orderBy(column)
    schema = StructType([StructField(column, StringType()), StructField(number, LongType())])
    return values.rdd.zipWithIndex().map(lambda p: (p[0][0], p[1])).toDF(schema).withColumn(
        number, F.col(number).cast("int"))


def item_factors(events: DataFrame, as_of, rank: int, seed: int) -> DataFrame:
    """``(user_id, item_0 .. item_{rank-1})`` for every user with an item event at or before
    ``as_of``: the user factors of ALS with ``implicitPrefs`` on :func:`interaction_counts`."""
    counts = interaction_counts(events, as_of)
    users = _numbered(counts, "user_id", "_user")
    items = _numbered(counts, "item_id", "_item")
    ratings = counts.join(users, "user_id").join(items, "item_id")
    model = ALS(rank=rank, implicitPrefs=True, alpha=ALPHA, regParam=REG_PARAM,
                maxIter=MAX_ITER, seed=seed, userCol="_user", itemCol="_item",
                ratingCol="interactions").fit(ratings)
    factors = model.userFactors.withColumnRenamed("id", "_user")
    return users.join(factors, "_user").select(
        "user_id", *[F.col("features")[i].cast("double").alias(c)
                     for i, c in enumerate(item_columns(rank))])
