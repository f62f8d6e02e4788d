"""One SparkSession for the whole test session, helpers to build configurations, and the
test tiers: every test carries exactly one of the markers of setup.cfg (unit, stage, e2e),
usually from its module's ``pytestmark``."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

from persona.config import Config
from persona.logs import setup_logging

# A fixed pseudonymization key, so that no test reads or writes a key in the home folder.
TEST_KEY = "persona-tests-key-0123456789abcdef"
os.environ.setdefault("PERSONA_KEY", TEST_KEY)

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
        # The session runs the whole suite (about 16,000 stages): with 3g its heap filled up.
        "spark.driver.memory": "6g",
        # Delta replays a table's log in 50 partitions by default: on test-sized tables,
        # scheduling them costs more than the replay (Delta's own test suites use 2).
        "spark.databricks.delta.snapshotPartitions": 2,
        # The session runs thousands of distinct queries; Persona keeps the code generated
        # for 2,000 (SESSION_CONF) and compiles it again for the others when they recur.
        "spark.sql.codegen.cache.maxEntries": 5000,
    },
}


_EMPTY_MLFLOW_DB: list[str] = []


def mlflow_db(tmp: str) -> str:
    """``tmp``/mlflow.db, begun as a copy of an empty MLflow database made once per session:
    MLflow takes about a second to create the tables of a new SQLite database, and the suite
    makes one per test."""
    path = os.path.join(tmp, "mlflow.db")
    if not _EMPTY_MLFLOW_DB:
        from mlflow import MlflowClient

        folder = tempfile.mkdtemp(prefix="persona-mlflow-")
        atexit.register(shutil.rmtree, folder, True)
        empty = os.path.join(folder, "mlflow.db")
        MlflowClient(f"sqlite:///{empty}").search_experiments()  # creates the tables
        _EMPTY_MLFLOW_DB.append(empty)
    if not os.path.exists(path):
        os.makedirs(tmp, exist_ok=True)
        shutil.copyfile(_EMPTY_MLFLOW_DB[0], path)
    return path


def make_config(tmp: str, **sections) -> Config:
    """A configuration with the lake, MLflow and Petastorm cache under ``tmp``."""
    data = {
        "lake": {"root": os.path.join(tmp, "lake")},
        "spark": TEST_SPARK,
        "mlflow": {"tracking_uri": f"sqlite:///{mlflow_db(tmp)}",
                   "artifact_location": os.path.join(tmp, "mlartifacts"),
                   "experiment": "persona-tests"},
        "train": {"num_proc": 2, "epochs": 3, "batch_size": 64, "hidden": [32, 16],
                  "latent_dim": 6, "noise": 0.1, "seed": 7,
                  "petastorm_cache": os.path.join(tmp, "petastorm")},
        "segment": {"k": 5, "seed": 7, "max_iter": 30, "n_init": 1},
    }
    for key, value in sections.items():
        data[key] = value
    return Config(data)


TIERS = ("unit", "stage", "e2e")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Refuse a test (outside tests/integration) without exactly one tier marker, before
    ``-m`` selects a tier, so that no test silently falls out of every tier."""
    wrong = []
    for item in items:
        if "integration" in item.nodeid.split("/")[:-1]:
            continue
        tiers = sorted({m.name for m in item.iter_markers() if m.name in TIERS})
        if len(tiers) != 1:
            wrong.append(f"{item.nodeid} ({', '.join(tiers) or 'no tier'})")
    if wrong:
        raise pytest.UsageError(
            "every test needs exactly one tier marker (pytestmark = pytest.mark.unit, stage "
            "or e2e at the top of its module): " + "; ".join(wrong))


@pytest.fixture(scope="session")
def spark():
    setup_logging()
    from persona.runtime.spark import get_spark

    session = get_spark(Config({"spark": TEST_SPARK}))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def generated(spark, tmp_path_factory):
    """The end-to-end run on generated data (:mod:`tests.runs`), built once per session."""
    from tests.runs import generated_run

    return generated_run(spark, tmp_path_factory)
