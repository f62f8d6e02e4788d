"""The end-to-end run on generated data, built once per test session and looked at by the
pipeline, tag, report and notebook tests; and copies of its lake for the tests that change one.

One run serves them all: a share of corrupted event rows (row accounting), enough users for
the planted segments to be recovered (adjusted Rand index), the demo's training settings
(``conf/local.yaml``), two profile tags trained by Horovod, then the HTML report.
"""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass

import yaml

from persona.config import Config
from persona.generate import generate
from persona.lake.tables import Lake
from persona.pipeline import run_pipeline, run_single
from tests.conftest import make_config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
USERS = 1000
SEED = 3
BAD_FRACTION = 0.005
TAGS = {
    "plan": {"attribute": "plan", "epochs": 30, "patience": 4},
    "churn": {"label": "churn", "cutoff": "2025-03-15", "horizon_days": 90, "epochs": 30,
              "patience": 4},
}


@dataclass(frozen=True)
class Run:
    config: Config
    lake: Lake
    counts: dict  # the rows persona.generate wrote
    results: dict  # run_pipeline's result: each stage's metrics
    report: dict  # the report stage's metrics
    data: str  # the generated data folder (truth.csv)
    launches: list  # the per-rank function of each Horovod job the pipeline started


_BUILT: dict[str, Run] = {}


@contextmanager
def horovod_launches():
    """The names of the per-rank functions of the Horovod jobs started in the block."""
    import horovod.spark

    launches, start = [], horovod.spark.run

    def counted(fn, *args, **kwargs):
        launches.append(fn.__name__)
        return start(fn, *args, **kwargs)

    horovod.spark.run = counted
    try:
        yield launches
    finally:
        horovod.spark.run = start


def generated_run(spark, tmp_path_factory) -> Run:
    """Generated data (planted segments, corrupted rows) through `persona run` with tags,
    then `persona report`. Built once; tests that change a lake change a :func:`lake_copy`."""
    if "run" not in _BUILT:
        tmp = str(tmp_path_factory.mktemp("generated"))
        data = os.path.join(tmp, "data")
        counts = generate(data, users=USERS, seed=SEED, bad_fraction=BAD_FRACTION)
        with open(os.path.join(ROOT, "conf", "local.yaml"), encoding="utf-8") as fh:
            local = yaml.safe_load(fh)
        sources = local["sources"]
        for name in ("events", "users", "content"):
            sources[name]["path"] = os.path.join(data, name)
        config = make_config(tmp, sources=sources, features=local["features"], tags=TAGS)
        config.set("train.epochs", local["train"]["epochs"])
        config.set("train.hidden", local["train"]["hidden"])
        config.set("privacy.min_segment_size", 1)  # every segment in profiles and report
        with horovod_launches() as launches:
            results = run_pipeline(config)
        report = run_single("report", config)
        _BUILT["run"] = Run(config, Lake(spark, config.path_of("lake.root")), counts, results,
                            report, data, launches)
    return _BUILT["run"]


def lake_copy(config: Config, spark, name: str, with_registry: bool = False,
              **settings) -> tuple[Config, Lake]:
    """The run's lake copied to a folder of its own, and the run's configuration pointed at
    it (with its own MLflow store and Petastorm cache) and ``settings`` (dotted keys): a
    test may change the copy without touching the shared run. ``with_registry``: the MLflow
    store is a copy of the run's, so that the models in use are the run's."""
    root = os.path.join(os.path.dirname(config.path_of("lake.root")), name)
    shutil.copytree(config.path_of("lake.root"), os.path.join(root, "lake"))
    own = make_config(root)
    if with_registry:
        prefix = "sqlite:///"
        shutil.copyfile(config.get("mlflow.tracking_uri")[len(prefix):],
                        own.get("mlflow.tracking_uri")[len(prefix):])
    copy = Config(config.data)
    for key in ("lake.root", "mlflow.tracking_uri", "mlflow.artifact_location",
                "train.petastorm_cache"):
        copy.set(key, own.get(key))
    for key, value in settings.items():
        copy.set(key, value)
    return copy, Lake(spark, copy.path_of("lake.root"))
