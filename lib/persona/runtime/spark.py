"""The SparkSession: Delta Lake enabled, quiet, configured from ``spark.*``."""
from __future__ import annotations

import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from pyspark import SparkConf, SparkContext, inheritable_thread_target
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from persona.config import Config
from persona.logs import QUIET_ENV, get_logger

DELTA_PACKAGE = "io.delta:delta-spark_2.12:3.3.2"
# Settings of every session Persona builds, unless spark.conf or spark-submit gives them.
SESSION_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
    # `persona run` plans over a thousand distinct queries; Spark keeps the code generated
    # for the last 100 by default and compiles the others again when they recur.
    "spark.sql.codegen.cache.maxEntries": 2000,
}

# Spark's own log configuration, shipped in the persona package (and in dist/conf).
LOG4J = os.path.join(os.path.dirname(os.path.dirname(__file__)), "log4j2.properties")

log = get_logger("spark")

# Rows per partition of a frame that many small jobs iterate over (K-Means, a logistic
# regression, the evaluation of a tag): on fewer rows, a job's cost is its tasks' overhead.
ROWS_PER_ITERATED_PARTITION = 200_000


def side_by_side(*steps: Callable[[], object]) -> list:
    """Run ``steps`` in threads (Spark's local properties inherited) and return their results
    in order, once all are done; the first (in order) that failed raises. For independent
    steps of small Spark jobs and Delta commits, whose latency, not the cores, bounds them."""
    with ThreadPoolExecutor(len(steps)) as pool:
        futures = [pool.submit(inheritable_thread_target(step)) for step in steps]
    return [future.result() for future in futures]


def iterated_partitions(df: DataFrame, rows: int) -> DataFrame:
    """``df`` (of about ``rows`` rows) in one partition per
    :data:`ROWS_PER_ITERATED_PARTITION` rows, at least one; fewer partitions, no shuffle."""
    return df.coalesce(max(1, -(-rows // ROWS_PER_ITERATED_PARTITION)))


def kept(df: DataFrame) -> DataFrame:
    """``df`` computed now and kept (in memory, spilling to disk), its lineage cut; free it
    with :func:`release`.

    A persisted frame keeps the plan that made it, and every job on it serializes that plan
    into its tasks: on a wide frame (hundreds of feature columns from joined groups) that
    costs more than the rows. Jobs on a kept frame read its blocks through a plan of one
    node. It is Spark's local checkpoint: the blocks stay on the executors that computed
    them (Spark keeps executors that hold cached blocks), and are not recomputed if one of
    those executors is lost: the stage fails and can be run again."""
    return df.localCheckpoint(eager=True)


def release(df: DataFrame) -> None:
    """Free the blocks of a frame :func:`kept` returned; it cannot be read afterwards."""
    df._jdf.queryExecution().analyzed().rdd().unpersist(False)


def column_cells(df: DataFrame, values: dict[str, Column], keep: tuple[str, ...] = ()
                 ) -> DataFrame:
    """``df`` in long form: for each of its rows and each entry of ``values`` (a name and a
    numeric column), the ``keep`` columns, ``position`` (the entry's index), ``name`` and
    ``value`` (a double).

    Statistics of many columns are aggregations of these cells grouped by name: one small
    generated program however many columns there are. Hundreds of aggregates over the wide
    frame give Spark generated code too large to compile, and it falls back to interpreted
    code: with 300 columns, seconds of planning on a few thousand rows and four times the
    time of the cells at 100,000."""
    names = F.array(*[F.lit(n) for n in values])
    cells = df.select(*keep, F.posexplode(F.array(*[v.cast("double") for v in values.values()]))
                      .alias("position", "value"))
    return cells.select(*keep, "position", F.element_at(names, F.col("position") + 1)
                        .alias("name"), "value")


def delta_jars_dir() -> str:
    """Where ``make env`` puts the Delta jars fetched from Maven Central."""
    return os.environ.get("PERSONA_JARS", os.path.join(sys.prefix, "share", "persona", "jars"))


def under_spark_submit() -> bool:
    """True when this process was started by spark-submit (which owns master and jars)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def get_spark(config: Config) -> SparkSession:
    """The active session, or one built from ``spark.*``.

    Under spark-submit, ``--master``, ``--packages`` and ``--conf`` decide; the
    configuration only adds what the command line left unset.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(str(config.get("spark.app_name")))
    given = _submitted_conf() if under_spark_submit() else None
    if given is None:
        builder = _local_builder(builder, config)
    for key, value in session_settings(config, given).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(str(config.get("spark.log_level")))
    log.info("Spark %s, master %s, UI at %s", spark.version, spark.sparkContext.master,
             spark.sparkContext.uiWebUrl)
    return spark


def session_settings(config: Config, given: SparkConf | None = None) -> dict[str, str]:
    """What a new session is given: :data:`SESSION_CONF` under ``spark.conf``, less what
    spark-submit ``given`` already set."""
    return {key: str(value) for key, value in {**SESSION_CONF, **config.section("spark.conf")}
            .items() if given is None or not given.contains(key)}


def _submitted_conf() -> SparkConf:
    """The settings spark-submit was given, read from the JVM it started (before the JVM
    is up, ``SparkConf()`` is an empty Python-side conf)."""
    SparkContext._ensure_initialized()
    return SparkConf()


def _local_builder(builder: SparkSession.Builder, config: Config) -> SparkSession.Builder:
    """Master, Python, quiet logs and Delta jars for a session this process launches."""
    master = str(config.get("spark.master"))
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = builder.master(master).config(
        "spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile=file:{LOG4J}")
    for key, value in QUIET_ENV.items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    jars = sorted(glob.glob(os.path.join(delta_jars_dir(), "*.jar")))
    if jars:
        return builder.config("spark.jars", ",".join(jars))
    return builder.config("spark.jars.packages", DELTA_PACKAGE)
