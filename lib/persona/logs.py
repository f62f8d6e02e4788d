"""Console logging: what each stage does, without library chatter."""
from __future__ import annotations

import logging
import os
import sys
import warnings

# Environment inherited by Spark's Python workers and Horovod ranks, so that
# TensorFlow start-up messages, pyarrow deprecations, Horovod's and MLflow's progress
# lines stay out of the console.
QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "PYTHONWARNINGS": "ignore",
    "GIT_PYTHON_REFRESH": "quiet",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "HOROVOD_LOG_LEVEL": "error",
}

_FORMAT = "%(asctime)s persona %(name)s | %(message)s"


def quiet_libraries() -> None:
    """Silence warnings that mean nothing to a user, here and in child processes."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    for name in ("py4j", "tensorflow", "absl", "petastorm", "mlflow", "alembic", "horovod",
                 "urllib3", "matplotlib", "pyarrow", "fsspec"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever ``sys.stderr`` is when a message is logged (pytest and
    notebooks replace it), never on a stream closed since."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def setup_logging(level: int = logging.INFO) -> None:
    """Log ``persona.*`` messages to stderr as one line each."""
    quiet_libraries()
    root = logging.getLogger("persona")
    if not root.handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


def get_logger(stage: str) -> logging.Logger:
    return logging.getLogger(f"persona.{stage}")
