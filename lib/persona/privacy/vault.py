"""The vault: a folder apart from the lake for what may hold personal data (quarantined
raw rows when ids are pseudonymized, the identity map)."""
from __future__ import annotations

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from persona.config import resolve_path
from persona.errors import writing
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


def write_identity_map(vault: Lake, source: str, pairs: DataFrame) -> None:
    """Replace ``source``'s rows of <vault>/identity_map by ``pairs`` (user_id: the raw
    id, pseudonym), one row per distinct raw id: a re-run leaves the same rows."""
    rows = (pairs.where(F.col("user_id").isNotNull()).distinct()
            .select(F.lit(source).alias("source"), "user_id", "pseudonym"))
    with writing(IDENTITY_MAP, vault.root):
        (rows.write.format("delta").mode("overwrite")
         .option("replaceWhere", f"source = '{source}'")
         .save(vault.path(IDENTITY_MAP)))
