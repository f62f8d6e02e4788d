"""The vault: a folder apart from the lake for what may hold personal data (quarantined
raw rows when ids are pseudonymized, the identity map)."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from persona.config import resolve_path
from persona.lake.tables import Lake

IDENTITY_MAP = "identity_map"


def vault_root(config) -> str:
    """``privacy.vault_root``, by default ``<lake.root>-vault``."""
    given = config.get("privacy.vault_root")
    return resolve_path(str(given)) if given else config.path_of("lake.root").rstrip("/") + "-vault"


def quarantine_lake(spark: SparkSession, config) -> Lake:
    """Where quarantine/<source> is: the vault when ids are pseudonymized, else the lake."""
    pseudonymized = config.get("privacy.pseudonymize")
    return Lake(spark, vault_root(config) if pseudonymized else config.path_of("lake.root"))


def write_identity_map(vault: Lake, source: str, pairs: DataFrame, replace: bool = True) -> None:
    """Add ``pairs`` (user_id: the raw id, pseudonym) to ``source``'s rows of
    <vault>/identity_map, one row per distinct raw id; with ``replace``, they replace the
    source's rows. A re-run leaves the same rows."""
    rows = (pairs.where(F.col("user_id").isNotNull()).distinct()
            .select(F.lit(source).alias("source"), "user_id", "pseudonym"))
    if replace:
        vault.replace_where(rows, IDENTITY_MAP, f"source = '{source}'")
    else:
        vault.upsert(rows, IDENTITY_MAP, "t.source = s.source AND t.user_id = s.user_id")
