"""Timestamps given in the configuration (``features.as_of``, a tag's ``cutoff``)."""
from __future__ import annotations

from datetime import datetime

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from persona.errors import PersonaError


def parse_timestamp(spark: SparkSession, value, key: str) -> datetime:
    """``value`` cast to a timestamp as Spark casts a string (``2025-03-15``,
    ``2025-03-15 12:00:00``; in the session time zone), on a one-row frame; a value that
    does not parse is refused naming ``key``."""
    try:
        parsed = spark.range(1).select(F.lit(str(value)).cast("timestamp").alias("t")).first()[0]
    except Exception:  # in ANSI mode Spark raises on a malformed value instead of giving null
        parsed = None
    if parsed is None:
        raise PersonaError(f"{key}: not a timestamp: {value!r}")
    return parsed
