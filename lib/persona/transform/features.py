"""Per-user features from canonical events, users and content (pure DataFrame functions).

Every function returns one row per user keyed by ``user_id``; :func:`fuse` joins the
groups onto the users who have events, and :func:`scale` turns the columns into the
network's input vector.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

SECONDS_PER_DAY = 86400.0
# Hour-of-day buckets: name -> [start, end)
DAYPARTS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}
# Heavy-tailed columns get a signed log before standardisation.
LOG_COLUMNS = {"recency_days", "tenure_days", "n_events", "n_sessions", "active_days",
               "n_purchases", "monetary", "avg_order_value", "quantity", "content_n",
               "content_text_length"}


def level_name(value: str) -> str:
    """A column-safe, lower-case version of a category or attribute level."""
    return re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_") or "blank"


def top_values(df: DataFrame, column: str, n: int) -> list[str]:
    """The ``n`` most frequent non-null values of ``column`` (ties by value)."""
    rows = (df.where(F.col(column).isNotNull()).groupBy(column).count()
            .orderBy(F.desc("count"), F.asc(column)).limit(n).collect())
    return [r[column] for r in rows]


def _share(condition: Column, total: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)) / total


def behaviour(events: DataFrame, as_of, purchase_types: list[str]) -> DataFrame:
    """Recency, frequency, monetary value and activity of each user up to ``as_of``."""
    is_purchase = F.col("event_type").isin(purchase_types)
    as_of_ts = F.lit(as_of).cast("timestamp")
    days = lambda ts: (F.unix_timestamp(as_of_ts) - F.unix_timestamp(ts)) / SECONDS_PER_DAY
    agg = events.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_events"),
        F.countDistinct("session_id").alias("n_sessions"),
        F.countDistinct(F.to_date("event_time")).alias("active_days"),
        F.max("event_time").alias("_last"),
        F.min("event_time").alias("_first"),
        F.sum(F.when(is_purchase, 1).otherwise(0)).alias("n_purchases"),
        F.coalesce(F.sum(F.when(is_purchase, F.col("amount"))), F.lit(0.0)).alias("monetary"),
        F.coalesce(F.sum(F.when(is_purchase, F.col("quantity"))), F.lit(0.0)).alias("quantity"),
    )
    return agg.select(
        "user_id",
        days(F.col("_last")).alias("recency_days"),
        days(F.col("_first")).alias("tenure_days"),
        F.col("n_events").cast("double"),
        F.col("n_sessions").cast("double"),
        F.col("active_days").cast("double"),
        F.col("n_purchases").cast("double"),
        F.col("monetary").cast("double"),
        F.when(F.col("n_purchases") > 0, F.col("monetary") / F.col("n_purchases"))
        .otherwise(0.0).alias("avg_order_value"),
        F.col("quantity").cast("double"),
    )


def event_mix(events: DataFrame, event_types: list[str]) -> DataFrame:
    """Share of each user's events of each type."""
    total = F.count(F.lit(1))
    return events.groupBy("user_id").agg(*[
        _share(F.col("event_type") == t, total).alias(f"type_{level_name(t)}")
        for t in event_types])


def category_affinity(events: DataFrame, categories: list[str]) -> DataFrame:
    """Share of each user's categorised events in each of the top categories."""
    with_category = events.where(F.col("category").isNotNull())
    total = F.count(F.lit(1))
    return with_category.groupBy("user_id").agg(*[
        _share(F.col("category") == c, total).alias(f"cat_{level_name(c)}")
        for c in categories])


def time_profile(events: DataFrame) -> DataFrame:
    """Share of each user's events per part of the day, and on weekends."""
    hour = F.hour("event_time")
    total = F.count(F.lit(1))
    weekend = F.dayofweek("event_time").isin(1, 7)  # Sunday = 1, Saturday = 7
    return events.groupBy("user_id").agg(
        *[_share((hour >= lo) & (hour < hi), total).alias(f"time_{name}")
          for name, (lo, hi) in DAYPARTS.items()],
        _share(weekend, total).alias("time_weekend"),
    )


def profile_attributes(users: DataFrame, categorical: dict[str, list[str]],
                       numeric: list[str]) -> DataFrame:
    """Numeric attributes (missing → population mean, with a flag) and one-hot levels.

    ``categorical`` maps each attribute to the levels kept; other values fall into
    ``_other`` and missing ones into ``_missing``.
    """
    users = users.dropDuplicates(["user_id"])
    cols: list[Column] = [F.col("user_id")]
    for name in numeric:
        cols.append(F.col(name).cast("double").alias(f"attr_{name}"))
        cols.append(F.col(name).isNull().cast("double").alias(f"attr_{name}_missing"))
    for name, levels in categorical.items():
        value = F.col(name)
        for level in levels:
            cols.append((value == level).cast("double").alias(f"attr_{name}_{level_name(level)}"))
        cols.append((value.isNotNull() & ~value.isin(levels)).cast("double")
                    .alias(f"attr_{name}_other"))
        cols.append(value.isNull().cast("double").alias(f"attr_{name}_missing"))
    out = users.select(*cols)
    if numeric:
        means = out.agg(*[F.avg(f"attr_{n}").alias(n) for n in numeric]).first().asDict()
        out = out.fillna({f"attr_{n}": float(means[n] or 0.0) for n in numeric})
    return out.fillna(0.0)


def content_stats(content: DataFrame) -> DataFrame:
    """How much each user writes, and how they rate."""
    return content.groupBy("user_id").agg(
        F.count(F.lit(1)).cast("double").alias("content_n"),
        F.avg("rating").alias("content_avg_rating"),
        F.coalesce(F.avg(F.length("text")), F.lit(0.0)).cast("double")
        .alias("content_text_length"),
    )


def fuse(base: DataFrame, groups: list[DataFrame]) -> DataFrame:
    """Left-join feature groups onto ``base`` (the users with events); absent → 0.

    A user with no reviews has rating statistics of 0 in the group's own scale; after
    standardisation that is simply "below everyone who rated".
    """
    out = base
    for group in groups:
        out = out.join(group, "user_id", "left")
    return out.fillna(0.0)


@dataclass
class Scaler:
    """Per-column transform for the network: signed log, z-score, clip, group weight."""

    columns: list[str]
    means: dict[str, float]
    stds: dict[str, float]
    weights: dict[str, float]
    clip: float = 5.0

    @staticmethod
    def _pre(name: str) -> Column:
        col = F.col(name).cast("double")
        if name in LOG_COLUMNS:
            return F.signum(col) * F.log1p(F.abs(col))
        return col

    @classmethod
    def fit(cls, df: DataFrame, groups: dict[str, list[str]], clip: float = 5.0) -> "Scaler":
        """Means and standard deviations in one Spark aggregation.

        Each group's columns are weighted by 1/sqrt(group size), so that every group
        contributes the same total variance and a wide group cannot drown a narrow one.
        """
        columns = [c for cols in groups.values() for c in cols]
        aggs = []
        for c in columns:
            aggs += [F.avg(cls._pre(c)).alias(f"m_{c}"), F.stddev_pop(cls._pre(c)).alias(f"s_{c}")]
        stats = df.agg(*aggs).first().asDict()
        weights = {c: 1.0 / math.sqrt(len(cols)) for cols in groups.values() for c in cols}
        return cls(columns,
                   {c: float(stats[f"m_{c}"] or 0.0) for c in columns},
                   {c: float(stats[f"s_{c}"] or 0.0) for c in columns},
                   weights, clip)

    def constant_columns(self) -> list[str]:
        return [c for c in self.columns if self.stds[c] < 1e-12]

    def transform(self, df: DataFrame, output: str = "features") -> DataFrame:
        """Add ``output``: array<float> of the scaled columns, in ``self.columns`` order."""
        scaled = []
        for c in self.columns:
            std = self.stds[c]
            z = (self._pre(c) - F.lit(self.means[c])) / F.lit(std) if std > 1e-12 else F.lit(0.0)
            z = F.greatest(F.lit(-self.clip), F.least(F.lit(self.clip), z))
            scaled.append((z * F.lit(self.weights[c])).cast("float"))
        return df.withColumn(output, F.array(*scaled))
