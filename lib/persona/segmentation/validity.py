"""Predictive validity of segments (pure DataFrame functions): how much of what users do
after a cut-off their segment explains, beside two classic RFM segmentations.

The outcome of each user active at or before the cut-off is the log of their spend in
the horizon after it and whether they churned (no purchase in it); a segmentation's
validity for an outcome is its η², the share of the outcome's variance between segments.
The baselines are what marketing teams use without a model: named RFM segments from
quintile scores of recency and frequency, and K-Means on standardised log RFM values.
"""
from __future__ import annotations

from datetime import datetime

from pyspark.ml.feature import StandardScaler, VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from persona.segmentation.models import fit_kmeans
from persona.tags.labels import horizon_purchases

SECONDS_PER_DAY = 86400.0
QUINTILES = [0.2, 0.4, 0.6, 0.8]
QUANTILE_ERROR = 0.001
# The ten-segment RFM map of marketing analytics, on the quintile scores of recency (R,
# 5: most recent) and frequency (F, 5: most frequent): (name, R range, F range). Rules
# apply in order, the first match wins; together they cover the 25 (R, F) cells once.
RFM_MAP = (
    ("Champions", (5, 5), (4, 5)),
    ("Loyal customers", (3, 4), (4, 5)),
    ("Potential loyalists", (4, 5), (2, 3)),
    ("New customers", (5, 5), (1, 1)),
    ("Promising", (4, 4), (1, 1)),
    ("Need attention", (3, 3), (3, 3)),
    ("About to sleep", (3, 3), (1, 2)),
    ("Can't lose them", (1, 2), (5, 5)),
    ("At risk", (1, 2), (3, 4)),
    ("Hibernating", (1, 2), (1, 2)),
)


def outcomes(events: DataFrame, cutoff: datetime, horizon_days: int,
             purchase_types: list[str]) -> DataFrame:
    """``(user_id, log_spend, churn)`` for every user with an event at or before
    ``cutoff``, from their purchase events in ``(cutoff, cutoff + horizon_days]`` (the
    population and window of the behaviour tags): ``ln(1 + spend)``, a negative total
    (refunds recorded as purchases) counting 0, and churn 1.0 when they made none."""
    future = horizon_purchases(events, cutoff, horizon_days, purchase_types)
    return future.select(
        "user_id", F.log1p(F.greatest(F.col("_spend").cast("double"), F.lit(0.0)))
        .alias("log_spend"),
        F.when(F.col("_purchases") == 0, 1.0).otherwise(0.0).alias("churn"))


def rfm(events: DataFrame, cutoff: datetime, purchase_types: list[str]) -> DataFrame:
    """``(user_id, recency_days, frequency, monetary)`` of every user with an event at or
    before ``cutoff``, from those events: days from the last purchase to the cut-off, the
    number of purchases (distinct sessions with a purchase event, each purchase event
    without a session counting one: an order of several lines is one purchase), and the
    sum of their amounts. A user who never purchased has frequency and monetary 0 and the
    recency of their last event."""
    is_purchase = F.col("event_type").isin(purchase_types)
    at = F.unix_timestamp(F.lit(cutoff).cast("timestamp"))
    last = F.coalesce(F.max(F.when(is_purchase, F.col("event_time"))), F.max("event_time"))
    return (events.where(F.col("event_time") <= F.lit(cutoff)).groupBy("user_id").agg(
        ((at - F.unix_timestamp(last)) / SECONDS_PER_DAY).alias("recency_days"),
        (F.countDistinct(F.when(is_purchase, F.col("session_id")))
         + F.count(F.when(is_purchase & F.col("session_id").isNull(), 1)))
        .cast("double").alias("frequency"),
        F.coalesce(F.sum(F.when(is_purchase, F.col("amount"))), F.lit(0.0))
        .cast("double").alias("monetary")))


def quintile_score(df: DataFrame, column: str, higher_is_better: bool = True):
    """A 1..5 score of ``column`` from its approximate quintile edges (computed once; tied
    values share a score): 5 for the top fifth, or the bottom fifth when lower is better."""
    edges = df.approxQuantile(column, QUINTILES, QUANTILE_ERROR)
    above = sum(((F.col(column) > F.lit(e)).cast("int") for e in edges), F.lit(0))
    return (above + 1) if higher_is_better else (5 - above)


def rfm_segments(rfm_df: DataFrame) -> DataFrame:
    """``(user_id, r_score, f_score, segment)``: the :data:`RFM_MAP` name of each user's
    recency and frequency quintile scores."""
    scored = rfm_df.select("user_id",
                           quintile_score(rfm_df, "recency_days", False).alias("r_score"),
                           quintile_score(rfm_df, "frequency").alias("f_score"))
    name = None
    for segment, (r_low, r_high), (f_low, f_high) in RFM_MAP:
        rule = F.col("r_score").between(r_low, r_high) & F.col("f_score").between(f_low, f_high)
        name = F.when(rule, segment) if name is None else name.when(rule, segment)
    return scored.withColumn("segment", name)


def kmeans_rfm(rfm_df: DataFrame, k: int, seed: int, max_iter: int, n_init: int = 1
               ) -> DataFrame:
    """``(user_id, segment)``: MLlib K-Means with ``k`` centres on the standardised
    ``ln(1 + x)`` of recency, frequency and monetary (a negative monetary counts 0)."""
    logs = rfm_df.select(
        "user_id", *[F.log1p(F.greatest(F.col(c), F.lit(0.0))).alias(c)
                     for c in ("recency_days", "frequency", "monetary")])
    assembled = VectorAssembler(inputCols=["recency_days", "frequency", "monetary"],
                                outputCol="_raw").transform(logs)
    scaled = StandardScaler(inputCol="_raw", outputCol="_rfm", withMean=True,
                            withStd=True).fit(assembled).transform(assembled)
    model = fit_kmeans(scaled, k, seed, max_iter, n_init, features="_rfm",
                       prediction="segment")
    return model.transform(scaled).select("user_id", "segment")


def eta_squared(df: DataFrame, group_col: str, value_col: str) -> float:
    """η² of ``value_col`` by ``group_col`` over the rows where both are known: the sum of
    squares between groups over the total sum of squares (0.0 when the values do not vary),
    from two aggregations: overall count, mean and variance, then group counts and means."""
    known = df.where(F.col(group_col).isNotNull() & F.col(value_col).isNotNull())
    total = known.agg(F.count(F.lit(1)).alias("n"), F.avg(value_col).alias("mean"),
                      F.var_pop(value_col).alias("var")).first()
    ss_total = (total["var"] or 0.0) * total["n"]
    if ss_total <= 0.0:
        return 0.0
    between = (known.groupBy(group_col)
               .agg(F.count(F.lit(1)).alias("n"), F.avg(value_col).alias("mean"))
               .agg(F.sum(F.col("n") * (F.col("mean") - F.lit(total["mean"])) ** 2)
                    .alias("ss")).first()["ss"])
    return min(1.0, between / ss_total)
