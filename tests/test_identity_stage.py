"""Stable segment ids through the segment stage on a small generated lake (events only, a
few feature groups): a refit with another seed keeps ids as well as the best one-to-one
matching of old to new segments, a refit with one more segment makes exactly one new id,
and a re-run writes no history."""
import os

import mlflow
import pytest
import yaml
from pyspark.sql import functions as F

from persona.generate import generate
from persona.lake.catalog import MODELS_TABLE
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.segmentation.identity import CATALOGUE_TABLE, FLOWS_TABLE, HISTORY_TABLE
from persona.segmentation.metrics import accuracy, contingency
from tests.conftest import make_config
from tests.runs import ROOT

pytestmark = pytest.mark.stage


def _assignment(lake):
    return lake.read("gold/user_segments").select("user_id", "segment")


def test_refits_keep_ids_and_history(spark, tmp_path):
    data = str(tmp_path / "data")
    generate(data, users=600, seed=5)
    with open(os.path.join(ROOT, "conf", "local.yaml"), encoding="utf-8") as fh:
        local = yaml.safe_load(fh)
    events = {**local["sources"]["events"], "path": os.path.join(data, "events")}
    config = make_config(str(tmp_path), sources={"events": events},
                         features={"groups": ["behaviour", "event_mix", "category", "time"]},
                         privacy={"pseudonymize": False})
    config.set("segment.k", 4)
    for stage in ("ingest", "features", "train", "embed"):
        run_single(stage, config)
    lake = Lake(spark, config.path_of("lake.root"))

    first = run_single("segment", config)
    assert first["segments_new"] == 4 and first["users_entered"] == 600
    assert sorted(r[0] for r in _assignment(lake).select("segment").distinct().collect()) \
        == [0, 1, 2, 3]
    # Pinned to this Delta version: a cached read of the table would follow later writes.
    before = lake.read("gold/user_segments", version=lake.version("gold/user_segments")) \
        .select("user_id", F.col("segment").alias("old"))

    # The same input again: the same ids, and neither the history nor the catalogue written.
    versions = {t: lake.version(t) for t in (HISTORY_TABLE, CATALOGUE_TABLE, FLOWS_TABLE)}
    again = run_single("segment", config)
    assert again["segments_kept"] == 4 and again["history_rows_written"] == 0
    assert {t: lake.version(t) for t in versions} == versions
    assert _assignment(lake).join(before, "user_id").where("segment <> old").count() == 0

    # Another seed: the users who keep their id are as many as the best matching allows.
    config.set("segment.seed", 11)
    config.set("segment.n_init", 1)
    refit = run_single("segment", config)
    pairs = _assignment(lake).join(before, "user_id")
    kept = pairs.where("segment = old").count() / pairs.count()
    assert kept >= accuracy(contingency(pairs, "old", "segment")) - 0.01
    moved = pairs.where("segment <> old").count()
    assert refit["users_exited"] == moved
    history = lake.read(HISTORY_TABLE)
    assert history.count() == 600 + moved
    assert history.where(F.col("valid_to").isNull()).count() == 600

    # One more segment: exactly one new id, above every id made before.
    ever = {r["id"] for r in lake.read(CATALOGUE_TABLE).collect()}
    config.set("segment.k", 5)
    bigger = run_single("segment", config)
    now = {r[0] for r in _assignment(lake).select("segment").distinct().collect()}
    assert bigger["segments_new"] == 1 and now - ever == {max(ever) + 1}
    catalogue = {r["id"]: r for r in lake.read(CATALOGUE_TABLE).collect()}
    assert {i for i, r in catalogue.items() if not r["retired"]} == now
    assert all(r["size"] == 0 for r in catalogue.values() if r["retired"])
    profiles = {r["segment"]: r["name"] for r in lake.read("gold/segment_profiles").collect()}
    assert all(profiles[i] == catalogue[i]["name"] for i in now)

    # The ids are recorded with the segment model, for an assignment without refit.
    version = lake.read("gold/user_segments").first()["model_version"]
    uri = lake.read(MODELS_TABLE).where((F.col("kind") == "segments")
                                        & (F.col("model_version") == version)).first()[
        "model_uri"]
    assert set(mlflow.artifacts.load_dict(uri)["ids"].values()) == now
    # A row per segment for each run that changed someone's segment.
    assert lake.read(FLOWS_TABLE).select("run_time").distinct().count() == (3 if moved else 2)
