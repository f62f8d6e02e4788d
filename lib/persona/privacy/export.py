"""export: audience files for activation from gold/user_segments, one folder per segment
(``audience=<segment>/``, CSV with a header: user_id, segment, segment_name); segments with
fewer than ``privacy.min_segment_size`` users are left out."""
from __future__ import annotations

from datetime import datetime, timezone

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from persona.errors import PersonaError
from persona.privacy.suppression import MIN_SIZE, note, suppressed
from persona.runtime.context import StageContext
from persona.stages.segment import PROFILES_TABLE, SEGMENTS_TABLE

HELP = ("audience files (pseudonymous user_id, segment, segment name) of the segments asked "
        "for, small segments left out → <lake.root>/exports/<UTC time> or --out")
EXPORTS = "exports"
AUDIENCE = "audience"  # the folder of each segment's files: audience=<segment>


def hadoop_fs(spark: SparkSession, path: str):
    """The Hadoop file system of ``path`` (local, HDFS, object stores) and its Path."""
    jvm = spark.sparkContext._jvm
    target = jvm.org.apache.hadoop.fs.Path(path)
    return target.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), target


def segment_name(profile: dict) -> str:
    """A segment's name: the one gold/segment_profiles gives it, else ``segment <id>``."""
    return profile.get("name") or f"segment {profile['segment']}"


def requested_segments(spec: str, known: list[int]) -> list[int]:
    """The segment ids of ``--segments`` (``all`` or ids separated by commas)."""
    if spec.strip() == "all":
        return sorted(known)
    try:
        ids = list(dict.fromkeys(int(x) for x in spec.split(",") if x.strip()))
    except ValueError:
        raise PersonaError(f"--segments: expected all or segment ids separated by commas, "
                           f"got {spec!r}") from None
    unknown = [str(i) for i in ids if i not in known]
    if unknown or not ids:
        missing = ", ".join(unknown) or repr(spec)
        raise PersonaError(f"--segments: no segment {missing} in "
                           f"{SEGMENTS_TABLE} (its segments: "
                           f"{', '.join(str(k) for k in sorted(known))})")
    return ids


def audience(segments: DataFrame, names: DataFrame, chosen: list[int]) -> DataFrame:
    """The rows to export: user_id, segment, segment_name and the folder column."""
    return (segments.where(F.col("segment").isin(chosen)).select("user_id", "segment")
            .join(F.broadcast(names), "segment", "left")
            .select("user_id", "segment", "segment_name", F.col("segment").alias(AUDIENCE)))


def write_audience(df: DataFrame, out: str) -> None:
    df.write.partitionBy(AUDIENCE).option("header", True).mode("errorifexists").csv(out)


def drop_users(spark: SparkSession, folder: str, values: list[str]) -> int:
    """Rewrite the audience files of ``folder`` without the users of ``values``; returns
    the rows removed (0, and nothing touched, for a folder that holds none)."""
    fs, target = hadoop_fs(spark, folder)
    if not any(s.isDirectory() and s.getPath().getName().startswith(f"{AUDIENCE}=")
               for s in fs.listStatus(target)):
        return 0
    rows = spark.read.option("header", True).csv(folder)
    removed = rows.where(F.col("user_id").isin(values)).count()
    if removed:
        staged = folder.rstrip("/") + ".rewrite"
        write_audience(rows.where(~F.col("user_id").isin(values)), staged)
        fs.delete(target, True)
        fs.rename(hadoop_fs(spark, staged)[1], target)
    return removed


def run(ctx: StageContext, segments: str, out: str | None) -> None:
    """Export the audiences of ``segments`` (``--segments``) to ``out`` (``--out``)."""
    assigned = ctx.lake.read(SEGMENTS_TABLE)
    sizes = {r["segment"]: r["count"] for r in assigned.groupBy("segment").count().collect()}
    chosen = requested_segments(segments, list(sizes))
    minimum = ctx.config.get(MIN_SIZE)
    kept = [s for s in chosen if not suppressed(sizes[s], minimum)]
    for s in chosen:
        if s not in kept:
            ctx.log.info(note(s, sizes[s], minimum, "not exported"))
    if not kept:
        raise PersonaError(f"every segment asked for has fewer than {MIN_SIZE}={minimum} "
                           f"users: nothing exported")
    profiles = ctx.lake.read_if_exists(PROFILES_TABLE)
    named = {} if profiles is None else {
        r["segment"]: segment_name(r.asDict()) for r in profiles.select(
            "segment", *[c for c in ("name",) if c in profiles.columns]).collect()}
    names = ctx.spark.createDataFrame(
        [(s, named.get(s) or segment_name({"segment": s})) for s in kept],
        "segment int, segment_name string")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = out or f"{ctx.lake.root}/{EXPORTS}/{stamp}"
    fs, target = hadoop_fs(ctx.spark, out)
    if fs.exists(target):
        raise PersonaError(f"--out: {out} already exists: export writes a new folder")
    write_audience(audience(assigned, names, kept), out)
    users = sum(sizes[s] for s in kept)
    ctx.metric("segments_exported", len(kept))
    ctx.metric("users_exported", users)
    ctx.metric("segments_suppressed", len(chosen) - len(kept))
    ctx.log.info("%d users of %d segment(s) written to %s (%s=<segment>/, CSV with a header)",
                 users, len(kept), out, AUDIENCE)
