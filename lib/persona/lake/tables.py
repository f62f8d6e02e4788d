"""The Delta lake under ``lake.root``: bronze, quarantine, silver and gold tables."""
from __future__ import annotations

from delta.tables import DeltaTable
from py4j.protocol import Py4JJavaError
from pyspark.errors import AnalysisException
from pyspark.sql import DataFrame, SparkSession

from persona.errors import PersonaError, writing

# The command that writes each table, named in the error a user sees when it is missing.
WRITERS = {
    "silver/user_features": "features", "silver/user_labels": "features",
    "silver/user_aggregates": "features",
    "gold/user_embeddings": "embed", "gold/user_segments": "segment",
    "gold/segment_profiles": "segment", "gold/segments": "segment",
    "gold/segment_history": "segment", "gold/segment_flows": "segment",
    "gold/user_tags": "tag", "gold/tag_metrics": "tag",
    "gold/segment_quality": "evaluate", "meta/models": "train",
    "meta/drift_reference": "train", "gold/drift": "embed",
    "meta/segment_reference": "segment",
}
# bronze/<source> and quarantine/<source>, one per configured source.
LAYER_WRITERS = {"bronze": "ingest", "quarantine": "ingest"}


def writer(table: str) -> str | None:
    """The command that writes ``table`` (``layer/name``), None for a table it does not know."""
    return WRITERS.get(table) or LAYER_WRITERS.get(table.split("/")[0])


def merge_counts(changes: dict[str, int]) -> str:
    """The row counts of :meth:`Lake.merge` as a log phrase: ``3 inserted, 0 updated, ...``."""
    return ", ".join(f"{count} {kind}" for kind, count in changes.items())


# Bronze tables record their change data feed: what `persona update` reads to find the users
# whose events, profile or content changed since the last one.
CHANGE_FEED = "delta.enableChangeDataFeed"


def _writer(df: DataFrame, table: str, mode: str):
    """A Delta writer of ``df`` to ``table``; a bronze table records its changes from its
    creation on (:data:`CHANGE_FEED`; ignored when the table exists)."""
    writer = df.write.format("delta").mode(mode)
    return writer.option(CHANGE_FEED, "true") if table.startswith("bronze/") else writer


class Lake:
    """Reads and writes the Delta tables of one lake root."""

    def __init__(self, spark: SparkSession, root: str):
        self.spark = spark
        self.root = root.rstrip("/")

    def path(self, table: str) -> str:
        """``table`` is ``layer/name``, e.g. ``silver/user_features``."""
        return f"{self.root}/{table}"

    def exists(self, table: str) -> bool:
        return DeltaTable.isDeltaTable(self.spark, self.path(table))

    def read(self, table: str, version: int | None = None) -> DataFrame:
        if not self.exists(table):
            stage = writer(table)
            hint = f": run `persona {stage}` first" if stage else ""
            raise PersonaError(f"table {table} not found under lake.root={self.root}{hint}")
        reader = self.spark.read.format("delta")
        if version is not None:
            reader = reader.option("versionAsOf", version)
        return reader.load(self.path(table))

    def read_if_exists(self, table: str) -> DataFrame | None:
        """The table, or None before the first run that writes it."""
        return self.read(table) if self.exists(table) else None

    def version(self, table: str) -> int | None:
        """The latest Delta version of ``table``, or None when it does not exist."""
        if not self.exists(table):
            return None
        return DeltaTable.forPath(self.spark, self.path(table)).history(1).first()["version"]

    def commit_metadata(self, table: str) -> str | None:
        """The metadata kept with the table's latest commit, None when it has none."""
        if not self.exists(table):
            return None
        return DeltaTable.forPath(self.spark, self.path(table)).history(1).first()["userMetadata"]

    def record_changes(self, table: str) -> None:
        """Turn on the change data feed of ``table`` (made before bronze tables recorded it)."""
        table_ = DeltaTable.forPath(self.spark, self.path(table))
        if table_.detail().first()["properties"].get(CHANGE_FEED) != "true":
            self.spark.sql(f"ALTER TABLE delta.`{self.path(table)}` "
                           f"SET TBLPROPERTIES ({CHANGE_FEED} = true)")

    def changed_keys(self, since: dict[str, int], until: dict[str, int], key: str = "user_id",
                     also: DataFrame | None = None) -> tuple[DataFrame, int] | None:
        """The distinct ``key`` values of the rows written or deleted in each table of
        ``until`` after its version in ``since`` up to its version in ``until``, from the
        tables' change data feeds, and those of ``also``: persisted, and their number. None
        when a table did not record the changes of all those versions (see
        :data:`CHANGE_FEED`) or they were vacuumed."""
        keys = also.select(key) if also is not None else self.spark.createDataFrame(
            [], f"{key} string")
        try:
            for table, version in until.items():
                if version > since[table]:
                    keys = keys.unionByName(
                        self.spark.read.format("delta").option("readChangeFeed", "true")
                        .option("startingVersion", since[table] + 1)
                        .option("endingVersion", version).load(self.path(table)).select(key))
            keys = keys.distinct().persist()
            return keys, keys.count()
        except (AnalysisException, Py4JJavaError):
            keys.unpersist()
            return None

    def overwrite(self, df: DataFrame, table: str, partition_by: list[str] | None = None,
                  metadata: str | None = None) -> None:
        """Replace the table's content (and schema) with ``df``: re-runs give the same table.
        ``metadata`` is kept with the commit (:meth:`commit_metadata`)."""
        writer = _writer(df, table, "overwrite").option("overwriteSchema", "true")
        if metadata is not None:
            writer = writer.option("userMetadata", metadata)
        if partition_by:
            writer = writer.partitionBy(*partition_by)
        with writing(table, self.root):
            writer.save(self.path(table))

    def append(self, df: DataFrame, table: str) -> None:
        with writing(table, self.root):
            _writer(df, table, "append").option("mergeSchema", "true").save(self.path(table))

    def replace_where(self, df: DataFrame, table: str, condition: str) -> None:
        """Replace the rows matching the SQL ``condition`` with ``df`` (whose rows all match
        it), creating the table if needed: re-runs give the same table. Columns new in
        ``df`` are added to the table (null in its other rows)."""
        writer = _writer(df, table, "overwrite").option("mergeSchema", "true")
        if self.exists(table):
            writer = writer.option("replaceWhere", condition)
        with writing(table, self.root):
            writer.save(self.path(table))

    def merge(self, df: DataFrame, table: str, key: str, changed: str) -> dict[str, int]:
        """Upsert ``df`` into ``table`` by ``key``; rows gone from ``df`` are deleted.

        ``changed`` is a SQL condition on ``t`` (target) and ``s`` (source) telling when a
        matched row is rewritten, so that an identical re-run leaves rows untouched.
        Returns the MERGE's row counts from the Delta log.
        """
        if not self.exists(table):
            self.overwrite(df, table)
            return {"inserted": df.count(), "updated": 0, "deleted": 0}
        target = DeltaTable.forPath(self.spark, self.path(table))
        with writing(table, self.root):
            (
                target.alias("t")
                .merge(df.alias("s"), f"t.{key} = s.{key}")
                .whenMatchedUpdateAll(condition=changed)
                .whenNotMatchedInsertAll()
                .whenNotMatchedBySourceDelete()
                .execute()
            )
        metrics = target.history(1).first()["operationMetrics"]
        return {
            "inserted": int(metrics.get("numTargetRowsInserted", 0)),
            "updated": int(metrics.get("numTargetRowsUpdated", 0)),
            "deleted": int(metrics.get("numTargetRowsDeleted", 0)),
        }

    def upsert(self, df: DataFrame, table: str, on: str) -> int:
        """MERGE ``df`` into ``table`` on the SQL condition ``on`` (``t`` target, ``s``
        source): matched rows take the source's values, the others are inserted, no row is
        deleted. An empty ``df`` writes nothing (no new Delta version). Returns its rows."""
        rows = df.count()
        if not rows:
            return 0
        if not self.exists(table):
            self.overwrite(df, table)
            return rows
        target = DeltaTable.forPath(self.spark, self.path(table))
        with writing(table, self.root):
            (target.alias("t").merge(df.alias("s"), on).whenMatchedUpdateAll()
             .whenNotMatchedInsertAll().execute())
        return rows
