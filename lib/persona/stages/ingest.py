"""ingest: raw sources → bronze/<source> (accepted rows) + quarantine/<source> (rejected rows).

With ``privacy.pseudonymize`` on, user ids are replaced by their pseudonym before anything
is written, and quarantine/<source> (raw rows) is written to the vault, not the lake."""
from __future__ import annotations

import threading

from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.features.external import configured
from persona.ingest.files import reading
from persona.ingest.increments import (Batch, IngestLog, changed_files, list_files, new_files,
                                       settings_digest, unreadable)
from persona.ingest.sources import SourceSpec, configured_sources
from persona.ingest.validation import (BATCH, INGESTED_AT, REASON, SOURCE_FILE, accepted,
                                      rejected, validate)
from persona.lake.tables import Lake
from persona.privacy.columns import protect
from persona.privacy.audit import VAULT, erased_rows
from persona.privacy.keys import load_key
from persona.privacy.pseudonyms import pseudonym_column
from persona.privacy.vault import quarantine_lake, vault_root, write_identity_map
from persona.runtime.context import StageContext
from persona.runtime.spark import side_by_side

RAW_ID = "__raw_user_id"

HELP = "raw sources → bronze Delta tables, rejected rows → quarantine"


def enabled(config) -> bool:
    """Skipped by `persona run` when features come ready-made from features.input.path."""
    return not configured(config)


def read_source(spark: SparkSession, spec: SourceSpec,
                files: list[str] | None = None) -> DataFrame:
    """The raw rows of one source (only ``files`` of it when given) with the file each came
    from; one clear error if unreadable."""
    reader = spark.read.format(spec.format).options(**spec.options)
    try:
        if not files or spec.format == "delta":  # an empty folder fails as it always did
            raw = reader.load(spec.path)
        else:
            if is_folder(spark, spec.path):  # partition columns as a whole-folder read finds
                reader = reader.option("basePath", spec.path)
            raw = reader.load(files)
    except AnalysisException as exc:
        raise unreadable(spec, exc) from None
    return raw.withColumn(SOURCE_FILE, F.input_file_name())


def is_folder(spark: SparkSession, path: str) -> bool:
    """Whether ``path`` is a folder (of any file system Hadoop reads)."""
    jvm = spark.sparkContext._jvm
    hadoop_path = jvm.org.apache.hadoop.fs.Path(path)
    fs = hadoop_path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.isDirectory(hadoop_path))


def plan(ctx: StageContext, spec: SourceSpec, listed: DataFrame, log: IngestLog,
         previous: Row | None, settings: str) -> tuple[str | None, DataFrame]:
    """(why the source is rebuilt, or None for an increment; the files to read), after the
    source's ``previous`` batch."""
    if ctx.config.get("ingest.mode") == "full":
        return "ingest.mode is full", listed
    if previous is None or not ctx.lake.exists(f"bronze/{spec.name}"):
        return "first ingest", listed
    if previous["settings"] != settings:
        return (f"sources.{spec.name} or the privacy settings changed since batch "
                f"{previous['batch']}"), listed
    taken = log.taken(spec.name)
    changed = changed_files(listed, taken).orderBy("path").limit(1).collect()
    if changed:
        return f"{changed[0]['path']} changed since it was ingested", listed
    return None, new_files(listed, taken)


def ingest_source(ctx: StageContext, spec: SourceSpec, key: bytes | None,
                  quarantine_at: Lake, identity_map: threading.Lock) -> Batch | None:
    """The new files of one source (every file on a rebuild) to bronze and quarantine, as
    one batch; with a key and pseudonymization on, user ids are pseudonyms (and, when
    asked, raw id -> pseudonym goes to the identity map, written while holding
    ``identity_map``). Returns the batch, for :meth:`IngestLog.record`, or None when there
    is nothing new."""
    pseudonymized = bool(ctx.config.get("privacy.pseudonymize"))
    log = IngestLog(ctx.lake)
    settings = settings_digest(spec, pseudonymized, key)
    listed = list_files(ctx.spark, spec).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        previous = log.last_batch(spec.name)
        rebuild, files = plan(ctx, spec, listed, log, previous, settings)
        taken = files.select("path", "length", "modified").collect()
    finally:
        listed.unpersist()
    batch = previous["batch"] + 1 if previous else 1
    if rebuild is None and not taken:
        ctx.log.info("%s: no new files since batch %d: nothing to ingest", spec.name,
                     previous["batch"])
        ctx.metric(f"{spec.name}_rows_read", 0)
        return None
    if rebuild:
        ctx.log.info("%s: rebuilding bronze from %d file(s) (%s)", spec.name, len(taken),
                     rebuild)
    else:
        ctx.log.info("%s: batch %d takes %d new file(s)", spec.name, batch, len(taken))
    counts = write_batch(ctx, spec, key, quarantine_at, [f["path"] for f in taken], batch,
                         bool(rebuild), identity_map)
    return Batch(spec.name, batch, bool(rebuild), taken, {"files": len(taken), **counts},
                 settings)


def write_batch(ctx: StageContext, spec: SourceSpec, key: bytes | None, quarantine_at: Lake,
                paths: list[str], batch: int, full: bool,
                identity_map: threading.Lock) -> dict[str, int]:
    """Validate ``paths`` and write batch ``batch`` (the whole tables when ``full``); a
    re-run of the same batch replaces its rows. Returns its row counts, reconciled.
    ``identity_map`` is held while writing the identity map."""
    pseudonymized = bool(ctx.config.get("privacy.pseudonymize"))
    bronze_table, quarantine_table = f"bronze/{spec.name}", f"quarantine/{spec.name}"
    with reading(ctx.spark, spec):
        raw = protect(read_source(ctx.spark, spec, paths), spec, key, pseudonymized)
        validated = (validate(raw, spec).withColumn(INGESTED_AT, F.current_timestamp())
                     .withColumn(BATCH, F.lit(batch)))
        if pseudonymized:
            validated = (validated.withColumn(RAW_ID, F.col("__user_id"))
                         .withColumn("__user_id", pseudonym_column(F.col("__user_id"), key)))
        validated.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            # One pass: the rows read, and the rejected ones by reason.
            by_reason = {r[REASON]: r["count"]
                         for r in validated.groupBy(REASON).count().collect()}
            read = sum(by_reason.values())
            reasons = {reason: count for reason, count in by_reason.items()
                       if reason is not None}
            ctx.log.info("%s: read %d rows from %s", spec.name, read, spec.path)
            batch_rows = f"{BATCH} = {batch}"
            if not full and ctx.lake.exists(bronze_table):
                ctx.lake.record_changes(bronze_table)
            for lake, table, rows in ((ctx.lake, bronze_table, accepted(validated, spec)),
                                      (quarantine_at, quarantine_table, rejected(validated))):
                if full:
                    lake.overwrite(rows, table)
                else:
                    lake.replace_where(rows, table, batch_rows)
            if pseudonymized and ctx.config.get("privacy.identity_map"):
                pairs = validated.where(F.col(REASON).isNull()).select(
                    F.col(RAW_ID).alias("user_id"), F.col("__user_id").alias("pseudonym"))
                with identity_map:
                    write_identity_map(quarantine_at, spec.name, pairs, replace=full)
        finally:
            validated.unpersist()
    bronze, quarantine = (_rows(lake.read(table), None if full else batch) for lake, table in
                          ((ctx.lake, bronze_table), (quarantine_at, quarantine_table)))
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
                           f"{quarantine_at.path(quarantine_table)}")
    return {"read": read, "bronze": bronze, "quarantine": quarantine}


def _rows(table: DataFrame, batch: int | None) -> int:
    """The rows of ``batch`` in ``table``, or all of them (which Delta counts from its log)."""
    return (table if batch is None else table.where(F.col(BATCH) == batch)).count()


def check_totals(ctx: StageContext, spec: SourceSpec, log: IngestLog,
                 quarantine_at: Lake) -> None:
    """Rows read by the batches since the last rebuild = rows in bronze + quarantine, plus
    those persona forget erased since."""
    totals = log.totals(spec.name)
    since = F.col(BATCH) >= totals["since"]
    bronze = ctx.lake.read(f"bronze/{spec.name}").where(since).count()
    quarantine = quarantine_at.read(f"quarantine/{spec.name}").where(since).count()
    erased = erased_rows(ctx.lake, [f"bronze/{spec.name}", f"quarantine/{spec.name}",
                                    f"{VAULT}quarantine/{spec.name}"], totals["at"])
    ctx.metric(f"{spec.name}_total_rows_read", totals["rows_read"])
    ctx.metric(f"{spec.name}_total_rows_bronze", bronze)
    ctx.metric(f"{spec.name}_total_rows_quarantine", quarantine)
    ctx.log.info("%s: %d rows read by %d batch(es) since batch %d; %d in bronze, %d in "
                 "quarantine%s", spec.name, totals["rows_read"], totals["batches"],
                 totals["since"], bronze, quarantine,
                 f", {erased} erased by persona forget" if erased else "")
    if bronze + quarantine + erased != totals["rows_read"]:
        raise PersonaError(f"sources.{spec.name}: row accounting failed over batches "
                           f"{totals['since']}-: read {totals['rows_read']}, bronze {bronze} + "
                           f"quarantine {quarantine} + erased {erased}")


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
    # The sources side by side, each to its own bronze and quarantine tables; the tables
    # they share are written one source at a time (concurrent Delta commits to one table
    # would conflict), the ingest log once for all of them.
    identity_map, written = threading.Lock(), {}

    def ingest(spec: SourceSpec) -> None:
        written[spec.name] = ingest_source(ctx, spec, key, quarantine_at, identity_map)

    log = IngestLog(ctx.lake)
    try:
        side_by_side(*[lambda spec=spec: ingest(spec) for spec in specs])
    finally:  # the batches written are recorded, even when another source failed
        log.record([b for b in written.values() if b is not None], ctx.run_id)
    for spec in specs:  # after a rebuild, the batch is the whole total
        if written[spec.name] is not None and not written[spec.name].full:
            check_totals(ctx, spec, log, quarantine_at)
