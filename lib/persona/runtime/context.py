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
        self.log_metrics({name: value})

    # MLflow's active run is per thread: these name the stage's run, so that the steps a
    # stage runs side by side (persona.runtime.spark.side_by_side) log to it too.
    def log_metrics(self, values: dict[str, float], step: int | None = None) -> None:
        """Metrics of the stage's MLflow run that are not part of its result."""
        mlflow.log_metrics(values, step=step, run_id=self.run_id or None)

    def set_tag(self, key: str, value: str) -> None:
        """A tag of the stage's MLflow run."""
        if self.run_id:
            mlflow.MlflowClient().set_tag(self.run_id, key, value)
        else:
            mlflow.set_tag(key, value)

    def log_dict(self, value: dict, artifact: str) -> None:
        """A JSON artifact of the stage's MLflow run."""
        mlflow.log_dict(value, artifact, run_id=self.run_id or None)


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
