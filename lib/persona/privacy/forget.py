"""forget: erase users from every Delta table of the lake and the vault (DELETE, purge,
vacuum), from the files that hold per-user rows, and record the erasure in meta/audit.

A line of the ids file is taken as a pseudonym when it is 64 lowercase hex digits and a
``user_id`` of some lake table; any other line is a raw id, hashed with the key when
``privacy.pseudonymize`` is on. Rows are matched on both the line and its pseudonym.
"""
from __future__ import annotations

import re
from contextlib import contextmanager
from functools import reduce

from delta.tables import DeltaTable
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import (IntegerType, LongType, MapType, StringType, StructField,
                               StructType)

from persona.config import Config
from persona.errors import PersonaError, writing
from persona.ingest.validation import safe_name
from persona.privacy.audit import AUDIT_TABLE, VAULT
from persona.privacy.export import EXPORTS, drop_users, hadoop_fs
from persona.privacy.pseudonyms import Ids
from persona.privacy.vault import IDENTITY_MAP, vault_root
from persona.runtime.context import StageContext
from persona.stages.report import REPORT

HELP = ("erase the users of an ids file from every table, from time travel (purge, vacuum) "
        "and from caches; recorded in meta/audit")
PSEUDONYM = re.compile(r"^[0-9a-f]{64}$")
# Columns that hold a user's id in any table; quarantine tables add their source's raw one.
ID_COLUMNS = ("user_id", "pseudonym")
RETENTION_CHECK = "spark.databricks.delta.retentionDurationCheck.enabled"
LISTING = "spark.sql.sources.parallelPartitionDiscovery.parallelism"
# One row per erasure (its time, "at", added when written): counts, never ids or who.
AUDIT_SCHEMA = StructType([
    StructField("action", StringType()),
    StructField("ids_requested", LongType()), StructField("users_found", LongType()),
    StructField("rows_deleted", MapType(StringType(), LongType())),
    StructField("rows_deleted_total", LongType()), StructField("retention_hours", IntegerType()),
    StructField("mlflow_run_id", StringType()),
])


def read_ids(spark: SparkSession, path: str) -> list[str]:
    """The distinct non-empty lines of the ids file, in file order."""
    fs, target = hadoop_fs(spark, path)
    if not fs.exists(target) or fs.getFileStatus(target).isDirectory():
        raise PersonaError(f"--ids: no such file: {path}")
    lines = [r[0].strip() for r in spark.read.text(path).collect()]
    ids = list(dict.fromkeys(line for line in lines if line))
    if not ids:
        raise PersonaError(f"--ids: {path} holds no id (one id per line)")
    return ids


def delta_tables(spark: SparkSession, root: str, depth: int = 5) -> list[str]:
    """The Delta tables under ``root`` (folders holding ``_delta_log``), as paths relative to
    it, found by walking; folders whose name starts with ``_`` or ``.`` are not entered."""
    fs, base = hadoop_fs(spark, root)
    if not fs.exists(base):
        return []
    found: list[str] = []

    def walk(path, rel: str, left: int) -> None:
        folders = {s.getPath().getName(): s.getPath() for s in fs.listStatus(path)
                   if s.isDirectory()}
        if "_delta_log" in folders:
            found.append(rel)
            return
        for name in sorted(folders) if left else []:
            if not name.startswith(("_", ".")):
                walk(folders[name], f"{rel}/{name}".lstrip("/"), left - 1)

    walk(base, "", depth)
    return [t for t in found if t]


def raw_id_columns(config: Config) -> dict[str, str]:
    """Per source, the raw column its user ids come from (as a quarantine table names it)."""
    out = {}
    for name, source in config.section("sources").items():
        mapped = ((source or {}).get("columns") or {}).get("user_id", "user_id")
        if isinstance(mapped, str):
            out[name] = safe_name(mapped)
    return out


def id_columns(table: str, columns: list[str], raw_columns: dict[str, str]) -> list[str]:
    """The columns of ``table`` (``.../quarantine/<source>`` for rejected raw rows) that
    hold user ids."""
    names = [c for c in ID_COLUMNS if c in columns]
    parts = table.split("/")
    if len(parts) >= 2 and parts[-2] == "quarantine":
        raw = raw_columns.get(parts[-1])
        if raw in columns and raw not in names:
            names.append(raw)
    return names


def pseudonyms_of(ids: list[str], present: set[str], hasher: Ids) -> dict[str, str]:
    """Each requested line → the pseudonym it stands for: itself when it looks like one and
    is in the lake (``present``), else its keyed hash (itself when ids are not
    pseudonymised)."""
    return {i: i if PSEUDONYM.match(i) and i in present else hasher.value(i) for i in ids}


def matching(columns: list[str], values: list[str], types: dict[str, str]) -> Column:
    """Rows whose id ``columns`` hold one of ``values``."""
    tests = [(F.col(c) if types[c] == "string" else F.col(c).cast("string")).isin(values)
             for c in columns]
    return reduce(lambda a, b: a | b, tests)


@contextmanager
def session_conf(spark: SparkSession, settings: dict[str, str]):
    """``settings`` in the Spark session for the block only."""
    previous = {k: spark.conf.get(k, None) for k in settings}
    for key, value in settings.items():
        spark.conf.set(key, value)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def vacuum(spark: SparkSession, path: str, hours: int) -> None:
    """VACUUM ``path`` keeping ``hours`` of history, allowing less than Delta's 168 h; the
    table's files are listed in as many tasks as the cluster has cores (Spark's default of
    10,000 tasks would dominate the vacuum of a small table)."""
    with session_conf(spark, {RETENTION_CHECK: "false",
                              LISTING: str(spark.sparkContext.defaultParallelism)}):
        DeltaTable.forPath(spark, path).vacuum(float(hours))


def _erase(spark: SparkSession, root: str, name: str, path: str, columns: list[str],
           values: list[str]) -> tuple[int, set[str]]:
    """DELETE the rows of ``values`` from the table at ``path`` and purge them from its files
    (REORG ... APPLY (PURGE) when deletion vectors are on). Returns the rows deleted and
    the ids they held."""
    table = DeltaTable.forPath(spark, path)
    df = table.toDF()
    condition = matching(columns, values, dict(df.dtypes))
    rows = df.where(condition).count()
    if not rows:
        return 0, set()
    hits = {r[0] for r in df.where(condition).select(F.explode(F.array(
        *[F.col(c).cast("string") for c in columns])).alias("v")).where(
        F.col("v").isin(values)).distinct().collect()}
    with writing(name, root):
        table.delete(condition)
        properties = table.detail().select("properties").first()[0] or {}
        if properties.get("delta.enableDeletionVectors") == "true":
            spark.sql(f"REORG TABLE delta.`{path}` APPLY (PURGE)")
    return rows, hits


def _delete_children(spark: SparkSession, path: str) -> int:
    """Delete what is inside the folder ``path``; returns the entries deleted."""
    fs, target = hadoop_fs(spark, path)
    if not fs.exists(target):
        return 0
    entries = fs.listStatus(target)
    for entry in entries:
        fs.delete(entry.getPath(), True)
    return len(entries)


def _caches(ctx: StageContext, values: list[str]) -> int:
    """The files outside Delta tables that hold per-user rows: the Petastorm cache and the
    report are deleted (they are rebuilt by the next train and report), the audience files
    of <lake.root>/exports rewritten without the users (returns the rows removed there)."""
    spark, root = ctx.spark, ctx.lake.root
    cache = (ctx.config.path_of("train.petastorm_cache")
             if ctx.config.get("train.petastorm_cache") else f"{root}/_petastorm")
    removed = _delete_children(spark, cache)
    if removed:
        ctx.log.info("deleted %d cached training set(s) under %s", removed, cache)
    fs, report = hadoop_fs(spark, f"{root}/{REPORT}")
    if fs.exists(report):
        fs.delete(report, False)
        ctx.log.info("deleted %s (its map plots sampled users): run `persona report` again",
                     REPORT)
    fs, exports = hadoop_fs(spark, f"{root}/{EXPORTS}")
    total = 0
    for entry in fs.listStatus(exports) if fs.exists(exports) else []:
        if entry.isDirectory():
            dropped = drop_users(spark, entry.getPath().toString(), values)
            if dropped:
                ctx.log.info("removed %d row(s) from the audience files of %s/%s", dropped,
                             EXPORTS, entry.getPath().getName())
            total += dropped
    return total


def _requested(spark: SparkSession, config: Config, ids: list[str], tables: dict[str, str],
               columns: dict[str, list[str]]) -> tuple[dict[str, str], list[str]]:
    """Each requested line's pseudonym (:func:`pseudonyms_of`, ``present`` read from the lake's
    tables), and every value to erase: the lines, their pseudonyms and, from the identity
    map, the raw ids of the pseudonyms (for quarantined raw rows)."""
    candidates = [i for i in ids if PSEUDONYM.match(i)]
    present: set[str] = set()
    for name, cols in columns.items():
        if candidates and not name.startswith(VAULT) and "user_id" in cols:
            df = spark.read.format("delta").load(tables[name])
            present |= {r[0] for r in df.where(matching(["user_id"], candidates, dict(df.dtypes)))
                        .select(F.col("user_id").cast("string")).distinct().collect()}
    pseudonyms = pseudonyms_of(ids, present, Ids.of(config))
    values = set(ids) | set(pseudonyms.values())
    mapped = VAULT + IDENTITY_MAP
    if mapped in columns:
        identities = spark.read.format("delta").load(tables[mapped])
        values |= {r[0] for r in identities.where(F.col("pseudonym").isin(sorted(values)))
                   .select("user_id").distinct().collect()}
    return pseudonyms, sorted(values)


def run(ctx: StageContext, ids_path: str) -> None:
    """Erase the users of ``ids_path`` (see the module's docstring)."""
    spark, config = ctx.spark, ctx.config
    ids = read_ids(spark, ids_path)
    hours = config.get("privacy.retention_hours")
    vault = vault_root(config).rstrip("/")
    tables = {t: f"{ctx.lake.root}/{t}" for t in delta_tables(spark, ctx.lake.root)}
    tables.update({VAULT + t: f"{vault}/{t}" for t in delta_tables(spark, vault)})
    raw_columns = raw_id_columns(config)
    columns = {}  # the tables that hold user ids, and in which columns
    for name, path in tables.items():
        held = id_columns(name.removeprefix(VAULT),
                          spark.read.format("delta").load(path).columns, raw_columns)
        if held:
            columns[name] = held

    pseudonyms, values = _requested(spark, config, ids, tables, columns)
    deleted: dict[str, int] = {}
    found: set[str] = set()
    for name in sorted(columns):
        rows, hit = _erase(spark, ctx.lake.root, name, tables[name], columns[name], values)
        found |= hit
        if rows:
            deleted[name] = rows
            ctx.log.info("%s: %d row(s) deleted", name, rows)
    users = sum(1 for i in ids if i in found or pseudonyms[i] in found)
    for path in tables.values():
        vacuum(spark, path, hours)
    exported = _caches(ctx, values)

    total = sum(deleted.values())
    if total:
        ctx.log.info("%d of %d id(s) found; %d row(s) deleted from %d table(s); files older "
                     "than privacy.retention_hours=%d vacuumed", users, len(ids), total,
                     len(deleted), hours)
    else:
        ctx.log.info("none of the %d id(s) is in the lake or the vault: nothing deleted "
                     "(tables vacuumed to privacy.retention_hours=%d)", len(ids), hours)
    audit = spark.createDataFrame([("forget", len(ids), users, deleted, total, hours,
                                    ctx.run_id)], AUDIT_SCHEMA)
    ctx.lake.append(audit.select(F.current_timestamp().alias("at"), *audit.columns),
                    AUDIT_TABLE)
    ctx.metric("ids_requested", len(ids))
    ctx.metric("users_found", users)
    ctx.metric("rows_deleted", total)
    ctx.metric("tables_vacuumed", len(tables))
    ctx.metric("export_rows_deleted", exported)
    for name, rows in deleted.items():
        ctx.metric(f"rows_deleted.{name.replace(':', '.')}", rows)
