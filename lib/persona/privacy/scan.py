"""``persona privacy-check``: look for the raw user ids and the values of the declared
personal columns (``sources.<name>.pii``, ``pii_hashed``) in every Delta table under
``lake.root``, in the text files of the experiment's MLflow artifacts and in the report.

Matching rule. Text is cut into tokens at white space and ``, ; : | / \\ " ' ` ( ) [ ] { }
< > =``; a value is found where it equals a whole string cell or one of its tokens (string
and array<string> columns), or a token of a text file (one without a NUL byte in it).
Short values, plain numbers of fewer than 8 digits (Online Retail's customer ids) and
any value of fewer than 4 characters, collide with counts, codes and prices, so they are
looked for only as whole cells of ``user_id`` columns, never in other columns or files.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

import mlflow
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, StringType
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.ingest.sources import configured_sources
from persona.ingest.validation import validate
from persona.logs import get_logger
from persona.privacy.vault import vault_root
from persona.runtime.tracking import tracking_uri
from persona.stages.ingest import read_source
from persona.stages.report import REPORT

SEPARATORS = r"[\s,;:|/\\\"'`()\[\]{}<>=]+"
SHORT_NUMBER_DIGITS = 8  # plain numbers with fewer digits are short
SHORT_LENGTH = 4  # values with fewer characters are short
ID_COLUMN = "user_id"
MAX_FILE_BYTES = 64 * 1024 * 1024  # larger artifact files are not read
RAW_IDS = "raw user ids"

log = get_logger("privacy-check")


@dataclass(order=True)
class Finding:
    where: str  # table.column or a file
    kind: str  # raw user ids, or values of <source>.<column>
    count: int  # distinct values found

    def line(self) -> str:
        return f"{self.count} {self.kind} found in {self.where}"


def short(value: Column) -> Column:
    """Whether a value is too short to look for outside ``user_id`` cells."""
    number = value.rlike(r"^[+-]?[0-9]+([.][0-9]+)?$")
    digits = F.length(F.regexp_replace(value, "[^0-9]", ""))
    return (number & (digits < SHORT_NUMBER_DIGITS)) | (F.length(value) < SHORT_LENGTH)


def _union(parts: list[DataFrame]) -> DataFrame:
    """The rows of every frame of ``parts`` (not empty), matched by column name."""
    return reduce(DataFrame.unionByName, parts)


def needles(spark: SparkSession, config) -> DataFrame:
    """(kind, value, short): every raw user id and every value of a declared personal
    column of the configured raw sources, trimmed, distinct."""
    parts = []
    for spec in configured_sources(config.section("sources")):
        raw = read_source(spark, spec)
        parts.append(validate(raw, spec).select(F.lit(RAW_IDS).alias("kind"),
                                                F.col("__user_id").alias("value")))
        for key, names in (("pii", spec.pii), ("pii_hashed", spec.pii_hashed)):
            for name in names:
                if name not in raw.columns:
                    raise PersonaError(f"sources.{spec.name}.{key}: column {name!r} not "
                                       f"found in {spec.path}; available: "
                                       f"{', '.join(raw.columns)}")
                parts.append(raw.select(F.lit(f"values of {spec.name}.{name}").alias("kind"),
                                        F.trim(F.col(f"`{name}`").cast("string"))
                                        .alias("value")))
    found = _union(parts).where(F.col("value").isNotNull() & (F.col("value") != "")).distinct()
    return found.withColumn("short", short(F.col("value")))


def cell_tokens(df: DataFrame) -> DataFrame | None:
    """(column, token, whole) of every string and array<string> column of ``df``: each
    trimmed cell (whole) and each of its tokens; None when ``df`` has no such column."""
    cells = []
    for field in df.schema.fields:
        name = f"`{field.name}`"
        if isinstance(field.dataType, StringType):
            values = F.array(F.col(name))
        elif isinstance(field.dataType, ArrayType) and \
                isinstance(field.dataType.elementType, StringType):
            values = F.col(name)
        else:
            continue
        cells.append(df.select(F.lit(field.name).alias("column"),
                               F.explode(values).alias("cell")))
    if not cells:
        return None
    union = _union(cells).where(F.col("cell").isNotNull())
    whole = union.select("column", F.trim("cell").alias("token"), F.lit(True).alias("whole"))
    split = union.select("column", F.explode(F.split("cell", SEPARATORS)).alias("token"),
                         F.lit(False).alias("whole"))
    return whole.unionByName(split)


def table_findings(tables: dict[str, DataFrame], looked_for: DataFrame) -> list[Finding]:
    """Distinct values of ``looked_for`` in each column of each of ``tables`` (by name), by
    kind: one join of every table's tokens, so that ``looked_for`` is shuffled once."""
    parts = []
    for name, df in tables.items():
        tokens = cell_tokens(df)
        if tokens is not None:
            parts.append(tokens.select(F.lit(name).alias("table"), "*"))
    if not parts:
        return []
    tokens = _union(parts)
    hits = (tokens.join(looked_for, tokens["token"] == looked_for["value"])
            .where(~F.col("short") | (F.col("whole") & (F.col("column") == ID_COLUMN)))
            .groupBy("table", "column", "kind").agg(F.countDistinct("value").alias("n")))
    return sorted(Finding(f"{r['table']}.{r['column']}", r["kind"], r["n"])
                  for r in hits.collect())


def text_files(spark: SparkSession, root: str) -> DataFrame | None:
    """(path, text) of the files under ``root`` that hold no NUL byte (text, not binary),
    up to 64 MB each; None when there is no such folder."""
    try:
        files = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                 .load(root))
    except AnalysisException:
        return None
    text = F.decode(F.col("content"), "UTF-8")
    return (files.where(F.col("length") <= MAX_FILE_BYTES)
            .select("path", text.alias("text"))
            .where(F.instr("text", "\u0000") == 0))


def file_findings(files: DataFrame, looked_for: DataFrame) -> list[Finding]:
    """Distinct values of ``looked_for`` (all but the short ones) in each file, by kind."""
    tokens = files.select("path", F.explode(F.split("text", SEPARATORS)).alias("token"))
    hits = (tokens.join(looked_for.where(~F.col("short")),
                        tokens["token"] == looked_for["value"])
            .groupBy("path", "kind").agg(F.countDistinct("value").alias("n")))
    return sorted(Finding(r["path"], r["kind"], r["n"]) for r in hits.collect())


def delta_tables(spark: SparkSession, root: str, skip: str) -> list[str]:
    """The Delta tables under ``root`` (``layer/name``), without those under ``skip``."""
    jvm = spark.sparkContext._jvm
    base = jvm.org.apache.hadoop.fs.Path(root)
    fs = base.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(base):
        return []
    skip = skip.rstrip("/")
    found: list[str] = []

    def walk(path, relative: str, depth: int) -> None:
        if fs.exists(jvm.org.apache.hadoop.fs.Path(path, "_delta_log")):
            found.append(relative)
            return
        if depth == 0:
            return
        for status in fs.listStatus(path):
            name = status.getPath().getName()
            child = f"{relative}/{name}" if relative else name
            if status.isDirectory() and not name.startswith(("_", ".")) and \
                    f"{root.rstrip('/')}/{child}" != skip:
                walk(status.getPath(), child, depth - 1)

    walk(base, "", 4)
    return sorted(found)


def artifact_root(config) -> str | None:
    """The experiment's artifact location in the tracking store, else
    ``mlflow.artifact_location``, as a path Hadoop reads; None when neither is known."""
    mlflow.set_tracking_uri(tracking_uri(config))
    experiment = mlflow.get_experiment_by_name(str(config.get("mlflow.experiment")))
    location = experiment.artifact_location if experiment is not None else None
    if location is None and config.get("mlflow.artifact_location"):
        location = config.path_of("mlflow.artifact_location")
    if location is None:
        return None
    if location.startswith("s3://"):
        return "s3a://" + location[len("s3://"):]
    if location.startswith(("mlflow-artifacts:", "http:", "https:", "runs:")):
        raise PersonaError(f"privacy-check: cannot read the MLflow artifacts at {location}: "
                           f"set mlflow.artifact_location to a file system or object store "
                           f"path the check can read")
    return location


def privacy_check(spark: SparkSession, config) -> str:
    """Look everywhere; the summary line when nothing is found, else one PersonaError
    naming the first place (every place is logged, never the values)."""
    lake_root = config.path_of("lake.root").rstrip("/")
    looked_for = needles(spark, config).cache()
    try:
        kinds = {r["kind"]: (r["n"], r["short"]) for r in looked_for.groupBy("kind").agg(
            F.count(F.lit(1)).alias("n"), F.sum(F.col("short").cast("int")).alias("short"))
            .collect()}
        findings: list[Finding] = []
        tables = delta_tables(spark, lake_root, vault_root(config))
        findings += table_findings({t: spark.read.format("delta").load(f"{lake_root}/{t}")
                                    for t in tables}, looked_for)
        files = 0
        report_dir = f"{lake_root}/{REPORT.rsplit('/', 1)[0]}"
        for root in (artifact_root(config), report_dir):
            texts = text_files(spark, root) if root else None
            if texts is None:
                continue
            texts = texts.cache()
            try:
                files += texts.count()
                findings += file_findings(texts, looked_for)
            finally:
                texts.unpersist()
    finally:
        looked_for.unpersist()
    for finding in findings:
        log.error("%s", finding.line())
    if findings:
        more = f" (and {len(findings) - 1} more places, in the log)" if len(findings) > 1 else ""
        raise PersonaError(f"privacy-check: {findings[0].line()}{more}")
    values = ", ".join(f"{n} {kind}" for kind, (n, _) in sorted(kinds.items()))
    short_values = sum(s for _, s in kinds.values())
    return (f"privacy-check: clean: {values or 'no values'} looked for in {len(tables)} "
            f"tables under {lake_root} and {files} text files ({short_values} short values "
            f"only in {ID_COLUMN} cells)")
