"""One SparkSession for the whole test session, and helpers to build configurations."""
from __future__ import annotations

import os

import pytest

from persona.config import Config
from persona.logs import setup_logging

# Fixed, small settings for tests: 2 local cores, few shuffle partitions.
TEST_SPARK = {
    "master": "local[2]",
    "app_name": "persona-tests",
    "log_level": "ERROR",
    "conf": {
        "spark.sql.shuffle.partitions": 2,
        "spark.default.parallelism": 2,
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.enabled": False,
        "spark.ui.showConsoleProgress": False,
        "spark.driver.memory": "3g",
    },
}


def make_config(tmp: str, **sections) -> Config:
    """A configuration with the lake, MLflow and Petastorm cache under ``tmp``."""
    data = {
        "lake": {"root": os.path.join(tmp, "lake")},
        "spark": TEST_SPARK,
        "mlflow": {"tracking_uri": f"sqlite:///{tmp}/mlflow.db",
                   "artifact_location": os.path.join(tmp, "mlartifacts"),
                   "experiment": "persona-tests"},
        "train": {"num_proc": 2, "epochs": 3, "batch_size": 64, "hidden": [32, 16],
                  "latent_dim": 6, "noise": 0.1, "seed": 7,
                  "petastorm_cache": os.path.join(tmp, "petastorm")},
        "segment": {"k": 5, "seed": 7, "max_iter": 30},
    }
    for key, value in sections.items():
        data[key] = value
    return Config(data)


@pytest.fixture(scope="session")
def spark():
    setup_logging()
    from persona.runtime.spark import get_spark

    session = get_spark(Config({"spark": TEST_SPARK}))
    yield session
    session.stop()
