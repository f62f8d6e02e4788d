"""meta/audit: the record of each persona forget, and what it erased."""
from __future__ import annotations

from pyspark.sql import functions as F

from persona.lake.tables import Lake

AUDIT_TABLE = "meta/audit"
# How meta/audit names a table of the vault: vault:<layer>/<name>.
VAULT = "vault:"


def erased_rows(lake: Lake, tables: list[str], since) -> int:
    """The rows persona forget deleted from ``tables`` (named as in meta/audit: a vault
    table as ``vault:<layer>/<name>``) at or after the time ``since``."""
    audit = lake.read_if_exists(AUDIT_TABLE)
    if audit is None:
        return 0
    rows = (audit.where(F.col("at") >= F.lit(since))
            .select(F.explode("rows_deleted").alias("table", "rows"))
            .where(F.col("table").isin(tables)).agg(F.sum("rows")).first()[0])
    return int(rows or 0)
