"""The outlook group: each user's expected purchases over the next period, learned from the
event log's own past, without labels (pure DataFrame functions).

What users do after ``as_of`` is unknown, but the log holds the same question one period
earlier: each user's features at ``as_of - days`` and what they bought in the ``days`` that
followed. A least-squares fit on that earlier cut (:func:`fit`), applied to the features at
``as_of`` (:func:`predict`), gives every user's expected log spend and chance of buying in
the next ``days``. Both are features like any other: scaled, weighted and reconstructed by
the autoencoder, so that the latent space and the segments keep what tells customers'
futures apart, which aggregates of the past alone leave to chance.
"""
from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from persona.features.build import LinearModels, least_squares
from persona.tags.labels import horizon_purchases

COLUMNS = ("outlook_log_spend", "outlook_active")


def next_period(events: DataFrame, start, days: int, purchase_types: list[str]) -> DataFrame:
    """``(user_id, outlook_log_spend, outlook_active)`` of every user with an event at or
    before ``start``: ln(1 + their spend on ``purchase_types`` in (start, start + days],
    a negative total counting 0) and 1.0 when they bought in that period, else 0.0 (the
    window of the behaviour tags, :func:`~persona.tags.labels.horizon_purchases`)."""
    bought = horizon_purchases(events, start, days, purchase_types)
    return bought.select(
        "user_id",
        F.log1p(F.greatest(F.col("_spend").cast("double"), F.lit(0.0))).alias(COLUMNS[0]),
        F.when(F.col("_purchases") > 0, 1.0).otherwise(0.0).alias(COLUMNS[1]))


def fit(history: DataFrame, outcome: DataFrame, predictors: list[str]) -> LinearModels:
    """The outlook's models: each of :data:`COLUMNS` of ``outcome`` (:func:`next_period`)
    from the ``predictors`` of ``history`` (features at the period's start)."""
    return least_squares(history.join(outcome, "user_id"), predictors, list(COLUMNS))


def predict(models: LinearModels, features: DataFrame) -> DataFrame:
    """``(user_id, *COLUMNS)`` for every user of ``features``: the expected log spend (at
    least 0) and chance of buying (in [0, 1])."""
    out = features.select("user_id", models.predictions().alias("_p"))
    spend, active = (F.col("_p")[c] for c in COLUMNS)
    return out.select("user_id", F.greatest(spend, F.lit(0.0)).alias(COLUMNS[0]),
                      F.least(F.greatest(active, F.lit(0.0)), F.lit(1.0)).alias(COLUMNS[1]))
