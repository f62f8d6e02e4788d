"""The SparkSession: Delta Lake enabled, quiet, configured from ``spark.*``."""
from __future__ import annotations

import glob
import os
import sys

from pyspark.sql import SparkSession

from persona.config import Config
from persona.logs import QUIET_ENV, get_logger

DELTA_PACKAGE = "io.delta:delta-spark_2.12:3.3.2"
DELTA_SQL_CONF = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOG4J = os.path.join(os.path.dirname(__file__), "log4j2.properties")

log = get_logger("spark")


def delta_jars_dir() -> str:
    """Where ``make env`` puts the Delta jars fetched from Maven Central."""
    return os.environ.get("PERSONA_JARS", os.path.join(sys.prefix, "share", "persona", "jars"))


def get_spark(config: Config) -> SparkSession:
    """Return the active session (spark-submit) or build one from the configuration."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    master = str(config.get("spark.master", "local[*]"))
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(str(config.get("spark.app_name", "persona")))
        .config("spark.driver.extraJavaOptions", f"-Dlog4j.configurationFile=file:{LOG4J}")
    )
    for key, value in DELTA_SQL_CONF.items():
        builder = builder.config(key, value)
    for key, value in QUIET_ENV.items():
        builder = builder.config(f"spark.executorEnv.{key}", value)
    for key, value in config.section("spark.conf").items():
        builder = builder.config(key, str(value))
    jars = sorted(glob.glob(os.path.join(delta_jars_dir(), "*.jar")))
    if jars:
        builder = builder.config("spark.jars", ",".join(jars))
    else:
        builder = builder.config("spark.jars.packages", DELTA_PACKAGE)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(str(config.get("spark.log_level", "ERROR")))
    log.info("Spark %s, master %s, UI at %s", spark.version, spark.sparkContext.master,
             spark.sparkContext.uiWebUrl)
    return spark
