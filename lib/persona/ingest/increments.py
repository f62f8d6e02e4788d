"""Which input files a source has, which ingest has already taken, and the record of each
ingest batch.

meta/ingested_files holds one row per file taken (source, path, length, modified, batch);
meta/ingest_batches one row per batch of a source (what it read, where the rows went).
A Delta source is one "file" whose length is its table version.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (IntegerType, LongType, StringType, StructField, StructType,
                               TimestampType)
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.ingest.sources import SourceSpec
from persona.lake.tables import Lake

FILES_TABLE = "meta/ingested_files"
BATCHES_TABLE = "meta/ingest_batches"
# Options of Spark's file sources that decide which files a source has.
LISTING_OPTIONS = ("pathGlobFilter", "recursiveFileLookup", "modifiedBefore", "modifiedAfter")
FILES_SCHEMA = StructType([
    StructField("source", StringType()), StructField("path", StringType()),
    StructField("length", LongType()), StructField("modified", TimestampType()),
    StructField("batch", IntegerType()),
])
BATCHES_SCHEMA = StructType([
    StructField("source", StringType()), StructField("batch", IntegerType()),
    StructField("mode", StringType()), StructField("files", LongType()),
    StructField("rows_read", LongType()), StructField("rows_bronze", LongType()),
    StructField("rows_quarantine", LongType()), StructField("settings", StringType()),
    StructField("mlflow_run_id", StringType()),
])


def unreadable(spec: SourceSpec, exc: AnalysisException) -> PersonaError:
    """The one line for a source path Spark cannot read."""
    first = str(exc).strip().splitlines()[0]
    return PersonaError(f"sources.{spec.name}.path: cannot read {spec.path} as "
                        f"{spec.format}: {first}")


def list_files(spark: SparkSession, spec: SourceSpec) -> DataFrame:
    """path, length, modified of every file of the source, as Spark's reader would find
    them (hidden files left out); their content is not read."""
    try:
        if spec.format == "delta":
            return (DeltaTable.forPath(spark, spec.path).history(1)
                    .select(F.lit(spec.path).alias("path"), F.col("version").alias("length"),
                            F.col("timestamp").alias("modified")))
        options = {k: v for k, v in spec.options.items() if k in LISTING_OPTIONS}
        files = spark.read.format("binaryFile").options(**options).load(spec.path)
    except AnalysisException as exc:
        raise unreadable(spec, exc) from None
    return files.select("path", "length", F.col("modificationTime").alias("modified"))


def new_files(listed: DataFrame, taken: DataFrame) -> DataFrame:
    """The listed files that no batch has taken."""
    return listed.join(taken.select("path"), "path", "left_anti")


def changed_files(listed: DataFrame, taken: DataFrame) -> DataFrame:
    """The listed files taken before whose length or modification time differ now."""
    return (listed.alias("l").join(taken.alias("t"), "path")
            .where((F.col("l.length") != F.col("t.length"))
                   | (F.col("l.modified") != F.col("t.modified")))
            .select("path"))


def settings_digest(spec: SourceSpec, pseudonymized: bool, key: bytes | None) -> str:
    """A digest of everything that decides what a source's rows become: its reading,
    mapping and rules, and whether (and under which key) ids are pseudonyms. The key enters
    only through a keyed hash of a constant."""
    check = hashlib.sha256(b"persona-key-check" + key).hexdigest() if key else None
    text = json.dumps({"spec": asdict(spec), "pseudonymized": pseudonymized, "key": check},
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Batch:
    """One source's batch, written and not yet recorded: the files it took (rows of path,
    length, modified), its row counts (files, read, bronze, quarantine) and the digest of
    its settings."""

    source: str
    batch: int
    full: bool
    files: list[Row]
    counts: dict[str, int]
    settings: str


class IngestLog:
    """meta/ingested_files and meta/ingest_batches of one lake."""

    def __init__(self, lake: Lake):
        self.lake = lake

    def taken(self, source: str) -> DataFrame:
        """The files the batches of ``source`` have taken."""
        files = self.lake.read_if_exists(FILES_TABLE)
        if files is None:
            return self.lake.spark.createDataFrame([], FILES_SCHEMA)
        return files.where(F.col("source") == source)

    def last_batch(self, source: str) -> Row | None:
        """The latest batch of ``source``, None before its first."""
        batches = self.lake.read_if_exists(BATCHES_TABLE)
        if batches is None:
            return None
        return batches.where(F.col("source") == source).orderBy(F.desc("batch")).first()

    def totals(self, source: str) -> Row:
        """rows_read, rows_bronze, rows_quarantine, batches, since (the first batch) and
        at (its time) of ``source``'s batches since its last full batch."""
        batches = self.lake.read(BATCHES_TABLE).where(F.col("source") == source)
        start = batches.where(F.col("mode") == "full").agg(F.max("batch")).first()[0] or 0
        return (batches.where(F.col("batch") >= start)
                .agg(F.sum("rows_read").alias("rows_read"),
                     F.sum("rows_bronze").alias("rows_bronze"),
                     F.sum("rows_quarantine").alias("rows_quarantine"),
                     F.count("*").alias("batches"), F.min("batch").alias("since"),
                     F.min("at").alias("at"))
                .first())

    def record(self, batches: list[Batch], run_id: str | None) -> None:
        """Record ``batches`` (of different sources) and the files they took, in one commit
        per log table (two for ingested files when full and incremental batches mix); a full
        batch replaces its source's files."""
        if not batches:
            return
        spark = self.lake.spark
        for full in (True, False):
            these = [b for b in batches if b.full == full]
            if not these:
                continue
            taken = spark.createDataFrame(
                [(b.source, f["path"], f["length"], f["modified"], b.batch)
                 for b in these for f in b.files], FILES_SCHEMA)
            if full:
                names = ", ".join(f"'{b.source}'" for b in these)
                self.lake.replace_where(taken, FILES_TABLE, f"source IN ({names})")
            else:
                self.lake.append(taken, FILES_TABLE)
        rows = [(b.source, b.batch, "full" if b.full else "incremental", b.counts["files"],
                 b.counts["read"], b.counts["bronze"], b.counts["quarantine"], b.settings,
                 run_id) for b in batches]
        frame = spark.createDataFrame(rows, BATCHES_SCHEMA)
        self.lake.append(frame.select(F.current_timestamp().alias("at"), *frame.columns),
                         BATCHES_TABLE)
