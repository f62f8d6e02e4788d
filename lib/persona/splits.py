"""Deterministic splits of users (by a hash of the user id, so re-runs agree)."""
from __future__ import annotations

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F


def user_bucket(seed: int, column: str = "user_id") -> Column:
    """A number in [0, 1) fixed by the user id and ``seed``, uniform over users."""
    return (F.abs(F.xxhash64(F.col(column), F.lit(seed))) % 10000) / 10000.0


def split_users(df: DataFrame, fraction: float, seed: int, column: str = "user_id"):
    """``(rest, held_out)``: about ``fraction`` of the users held out."""
    held_out = user_bucket(seed, column) < fraction
    return df.where(~held_out), df.where(held_out)
