"""Pseudonyms: HMAC-SHA256 of a user id under the key, as 64 lowercase hex digits, in
Spark (built-in expressions only) and in Python for a single value."""
from __future__ import annotations

import hashlib
import hmac

from pyspark import SparkContext
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from persona.privacy.keys import load_key

BLOCK = 64  # SHA-256's block size in bytes


def pseudonym(key: bytes, value: str) -> str:
    """The pseudonym of one id (for ids given on a command line or in small files)."""
    return hmac.new(key, value.encode("utf-8"), hashlib.sha256).hexdigest()


def _pads(key: bytes) -> tuple[bytearray, bytearray]:
    """(K' xor ipad, K' xor opad), K' the key hashed when longer than a block, then padded."""
    if len(key) > BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(BLOCK, b"\0")
    return bytearray(b ^ 0x36 for b in key), bytearray(b ^ 0x5C for b in key)


def pseudonym_column(column: Column, key: bytes) -> Column:
    """HMAC(K, m) = SHA256((K' xor opad) || SHA256((K' xor ipad) || m)) of the column as a
    UTF-8 string; null stays null."""
    inner, outer = _pads(key)
    _redact(inner, outer)
    message = column.cast("string").cast("binary")
    digest = F.unhex(F.sha2(F.concat(F.lit(inner), message), 256))
    return F.sha2(F.concat(F.lit(outer), digest), 256)


def _redact(*secrets: bytearray) -> None:
    """Keep the padded key out of query plans (Spark UI, event logs, explain): Spark
    redacts what ``spark.sql.redaction.string.regex`` matches, and prints binary literals
    as upper-case hex."""
    if SparkContext._active_spark_context is None:
        return
    # The session itself, not the thread's active one: a thread that builds a column
    # (persona.runtime.spark.side_by_side) may have none.
    spark = SparkSession.builder.getOrCreate()
    conf = "spark.sql.redaction.string.regex"
    patterns = [bytes(s).hex().upper() for s in secrets]
    current = spark.conf.get(conf, None)
    missing = [p for p in patterns if not current or p not in current]
    if missing:
        spark.conf.set(conf, "|".join(([current] if current else []) + missing))


class Ids:
    """How user ids from outside the lake are written in it: their pseudonym when
    ``privacy.pseudonymize`` is on, else as they are."""

    def __init__(self, key: bytes | None):
        self.key = key

    @classmethod
    def of(cls, config) -> "Ids":
        return cls(load_key(config) if config.get("privacy.pseudonymize") else None)

    def column(self, column: Column) -> Column:
        """The ids of ``column`` (cast to string) as the lake holds them."""
        text = column.cast("string")
        return text if self.key is None else pseudonym_column(text, self.key)

    def value(self, user_id: str) -> str:
        return user_id if self.key is None else pseudonym(self.key, user_id)
