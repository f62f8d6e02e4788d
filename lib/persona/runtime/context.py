"""What every stage is handed: configuration, Spark, the lake, a logger, MLflow."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from logging import Logger

import mlflow
from pyspark.sql import SparkSession

from persona.config import Config
from persona.lake.tables import Lake
from persona.logs import get_logger
from persona.runtime.spark import get_spark
from persona.runtime.tracking import stage_run


@dataclass
class StageContext:
    config: Config
    spark: SparkSession
    lake: Lake
    log: Logger
    run_id: str = ""
    metrics: dict = field(default_factory=dict)

    def metric(self, name: str, value: float) -> None:
        """Record a metric in MLflow and in the stage's result."""
        self.metrics[name] = value
        mlflow.log_metric(name, value)


def run_stage(stage: str, fn, config: Config) -> dict:
    """Run one stage inside its own MLflow run; returns its metrics and wall time."""
    spark = get_spark(config)
    lake = Lake(spark, config.path_of("lake.root"))
    log = get_logger(stage)
    with stage_run(config, stage) as run:
        ctx = StageContext(config, spark, lake, log, run.info.run_id)
        spark.sparkContext.setJobGroup(stage, f"persona {stage}")
        start = time.time()
        log.info("starting (lake %s)", lake.root)
        fn(ctx)
        seconds = time.time() - start
        ctx.metric("wall_seconds", round(seconds, 2))
        log.info("done in %.1f s", seconds)
    return ctx.metrics
