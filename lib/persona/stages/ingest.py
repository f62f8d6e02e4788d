"""ingest: raw sources → bronze/<source> (accepted rows) + quarantine/<source> (rejected rows).

With ``privacy.pseudonymize`` on, user ids are replaced by their pseudonym before anything
is written, and quarantine/<source> (raw rows) is written to the vault, not the lake."""
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
from persona.lake.tables import Lake
from persona.privacy.columns import protect
from persona.privacy.keys import load_key
from persona.privacy.pseudonyms import pseudonym_column
from persona.privacy.vault import quarantine_lake, vault_root, write_identity_map
from persona.runtime.context import StageContext

RAW_ID = "__raw_user_id"

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


def ingest_source(ctx: StageContext, spec: SourceSpec, key: bytes | None,
                  quarantine_at: Lake) -> None:
    """One source to bronze and quarantine; with a key and pseudonymization on, user ids
    are pseudonyms (and, when asked, raw id -> pseudonym goes to the identity map)."""
    pseudonymized = bool(ctx.config.get("privacy.pseudonymize"))
    with reading(ctx.spark, spec):
        raw = protect(read_source(ctx.spark, spec), spec, key, pseudonymized)
        validated = validate(raw, spec).withColumn(INGESTED_AT, F.current_timestamp())
        if pseudonymized:
            validated = (validated.withColumn(RAW_ID, F.col("__user_id"))
                         .withColumn("__user_id", pseudonym_column(F.col("__user_id"), key)))
        validated.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            read = validated.count()
            ctx.log.info("%s: read %d rows from %s", spec.name, read, spec.path)
            ctx.lake.overwrite(accepted(validated, spec), f"bronze/{spec.name}")
            quarantine_at.overwrite(rejected(validated), f"quarantine/{spec.name}")
            if pseudonymized and ctx.config.get("privacy.identity_map"):
                write_identity_map(quarantine_at, spec.name, validated.where(
                    F.col(REASON).isNull()).select(F.col(RAW_ID).alias("user_id"),
                                                   F.col("__user_id").alias("pseudonym")))
            reasons = {r[REASON]: r["count"] for r in validated.where(
                F.col(REASON).isNotNull()).groupBy(REASON).count().collect()}
        finally:
            validated.unpersist()
    bronze = ctx.lake.read(f"bronze/{spec.name}").count()
    quarantine = quarantine_at.read(f"quarantine/{spec.name}").count()
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
                           f"and its formats; the rows are in "
                           f"{quarantine_at.path(f'quarantine/{spec.name}')}")


def run(ctx: StageContext) -> None:
    specs = configured_sources(ctx.config.section("sources"))
    key = None
    if ctx.config.get("privacy.pseudonymize"):
        key = load_key(ctx.config)
        ctx.log.info("user ids become pseudonyms (privacy.pseudonymize); quarantine goes to "
                     "the vault %s", vault_root(ctx.config))
    elif any(spec.pii_hashed for spec in specs):
        hashed = next(spec.name for spec in specs if spec.pii_hashed)
        key = load_key(ctx.config, f"sources.{hashed}.pii_hashed is set")
    quarantine_at = quarantine_lake(ctx.spark, ctx.config)
    for spec in specs:
        ingest_source(ctx, spec, key, quarantine_at)
