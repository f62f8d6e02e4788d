"""ingest: raw sources → bronze/<source> (accepted rows) + quarantine/<source> (rejected rows)."""
from __future__ import annotations

from pyspark import StorageLevel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.features.external import configured
from persona.ingest.files import reading
from persona.ingest.sources import SourceSpec, configured_sources
from persona.ingest.validation import INGESTED_AT, REASON, SOURCE_FILE, accepted, rejected, validate
from persona.runtime.context import StageContext

HELP = "raw sources → bronze Delta tables, rejected rows → quarantine"


def enabled(config) -> bool:
    """Skipped by `persona run` when features come ready-made from features.input.path."""
    return not configured(config)


def read_source(spark: SparkSession, spec: SourceSpec) -> DataFrame:
    """The raw rows of one source with the file each came from; one clear error if unreadable."""
    reader = spark.read.format(spec.format).options(**spec.options)
    try:
        raw = reader.load(spec.path)
    except AnalysisException as exc:
        first = str(exc).strip().splitlines()[0]
        raise PersonaError(f"sources.{spec.name}.path: cannot read {spec.path} as "
                           f"{spec.format}: {first}") from None
    return raw.withColumn(SOURCE_FILE, F.input_file_name())


def ingest_source(ctx: StageContext, spec: SourceSpec) -> None:
    with reading(ctx.spark, spec):
        raw = read_source(ctx.spark, spec)
        validated = validate(raw, spec).withColumn(INGESTED_AT, F.current_timestamp())
        validated.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            read = validated.count()
            ctx.log.info("%s: read %d rows from %s", spec.name, read, spec.path)
            ctx.lake.overwrite(accepted(validated, spec), f"bronze/{spec.name}")
            ctx.lake.overwrite(rejected(validated), f"quarantine/{spec.name}")
            reasons = {r[REASON]: r["count"] for r in validated.where(
                F.col(REASON).isNotNull()).groupBy(REASON).count().collect()}
        finally:
            validated.unpersist()
    bronze = ctx.lake.read(f"bronze/{spec.name}").count()
    quarantine = ctx.lake.read(f"quarantine/{spec.name}").count()
    ctx.metric(f"{spec.name}_rows_read", read)
    ctx.metric(f"{spec.name}_rows_bronze", bronze)
    ctx.metric(f"{spec.name}_rows_quarantine", quarantine)
    for reason, count in sorted(reasons.items()):
        ctx.metric(f"{spec.name}_quarantine.{reason.replace(' ', '_')}", count)
    detail = ", ".join(f"{r}: {c}" for r, c in sorted(reasons.items(), key=lambda x: -x[1]))
    ctx.log.info("%s: %d to bronze, %d to quarantine%s", spec.name, bronze, quarantine,
                 f" ({detail})" if detail else "")
    if bronze + quarantine != read:
        raise PersonaError(f"sources.{spec.name}: row accounting failed: read {read}, "
                           f"bronze {bronze} + quarantine {quarantine}")
    if read and not bronze:
        reason, count = max(reasons.items(), key=lambda item: item[1])
        raise PersonaError(f"sources.{spec.name}: every row was rejected (most often "
                           f"'{reason}', {count} of {read}): check sources.{spec.name}.columns "
                           f"and its formats; the rows are in quarantine/{spec.name}")


def run(ctx: StageContext) -> None:
    for spec in configured_sources(ctx.config.section("sources")):
        ingest_source(ctx, spec)
