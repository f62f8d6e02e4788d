"""MLflow tracking: one run per stage, nested under the pipeline run of ``persona run``."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

import mlflow

from persona.config import Config, resolve_path
from persona.logs import get_logger

log = get_logger("mlflow")


def tracking_uri(config: Config) -> str:
    """The configured URI; a relative SQLite path is made absolute."""
    uri = str(config.get("mlflow.tracking_uri"))
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        path = resolve_path(uri[len(prefix):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return prefix + path
    if "://" not in uri and not uri.startswith(("databricks", "file:")):
        return "file://" + resolve_path(uri)
    return uri


def use_experiment(config: Config) -> str:
    """Point MLflow at the configured server and experiment; returns the experiment id."""
    mlflow.set_tracking_uri(tracking_uri(config))
    name = str(config.get("mlflow.experiment"))
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = config.get("mlflow.artifact_location")
    if location and "://" not in str(location):
        location = "file://" + resolve_path(str(location))
    return mlflow.create_experiment(name, artifact_location=location)


@contextlib.contextmanager
def stage_run(config: Config, stage: str) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run for ``stage`` with the configuration logged as parameters."""
    experiment_id = use_experiment(config)
    nested = mlflow.active_run() is not None
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, nested=nested) as run:
        mlflow.set_tags({"persona.stage": stage, "persona.config": config.path or ""})
        params = {k: v for k, v in config.flat().items()
                  if k.split(".")[0] in ("lake", "train", "segment", "features", "mlflow")}
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        if not nested:
            log.info("MLflow run %s (%s) in experiment %s", run.info.run_id, stage,
                     config.get("mlflow.experiment"))
        yield run
