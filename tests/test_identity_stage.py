"""Stable segment ids through the segment stage on hand-made embeddings (four overlapping
clouds of 600 users): a refit with another seed keeps ids as well as the best one-to-one
matching of old to new segments, a refit with one more segment makes exactly one new id, a
re-run writes no history, and the model in use, assigning fewer users, gives the ids of its
fit and measures how the segments' shares moved."""
import mlflow
import numpy as np
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from persona.lake.catalog import MODELS_TABLE
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.segmentation.identity import CATALOGUE_TABLE, FLOWS_TABLE, HISTORY_TABLE
from persona.segmentation.metrics import accuracy, contingency
from tests.conftest import make_config

pytestmark = pytest.mark.stage

USERS, DIMS = 600, 4


def _assignment(lake):
    return lake.read("gold/user_segments").select("user_id", "segment")


def _clouds(spark, lake):
    """silver/user_features and gold/user_embeddings of four overlapping clouds."""
    rng = np.random.default_rng(5)
    centres = rng.normal(0, 2.0, (4, DIMS))
    points = centres[np.arange(USERS) % 4] + rng.normal(0, 1.0, (USERS, DIMS))
    users = [f"{i:064x}" for i in range(USERS)]  # pseudonyms, as the lake holds them
    names = ", ".join(f"f{d} double" for d in range(DIMS))
    lake.overwrite(spark.createDataFrame(
        [(u, *p.tolist(), p.tolist(), "fs1") for u, p in zip(users, points)],
        f"user_id string, {names}, features array<float>, feature_set_version string"),
        "silver/user_features")
    lake.overwrite(spark.createDataFrame(
        [(u, p.tolist(), "enc1", "fs1") for u, p in zip(users, points)],
        "user_id string, embedding array<float>, model_version string, "
        "feature_set_version string"), "gold/user_embeddings")


def test_refits_keep_ids_and_history(spark, tmp_path):
    config = make_config(str(tmp_path))
    config.set("segment.k", 4)
    config.set("privacy.min_segment_size", 1)
    lake = Lake(spark, config.path_of("lake.root"))
    _clouds(spark, lake)

    first = run_single("segment", config)
    assert first["segments_new"] == 4 and first["users_entered"] == USERS
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
    assert history.count() == USERS + moved
    assert history.where(F.col("valid_to").isNull()).count() == USERS

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

    # The model in use assigns fewer users (half of the largest segment gone): each share
    # against the fit's goes to gold/drift, and the largest move makes retraining due.
    sizes = {r["segment"]: r["count"]
             for r in _assignment(lake).groupBy("segment").count().collect()}
    largest, total = max(sizes, key=sizes.get), sum(sizes.values())
    gone = [r["user_id"] for r in _assignment(lake).where(F.col("segment") == largest)
            .limit(sizes[largest] // 2).collect()]
    DeltaTable.forPath(spark, lake.path("gold/user_embeddings")).delete(
        F.col("user_id").isin(gone))
    # The lake's segments renumbered: the model in use still gives each user the id its fit
    # recorded, not one matched to whatever the lake holds.
    ring = sorted(now)
    rotate = F.create_map(*[F.lit(x) for a, b in zip(ring, ring[1:] + ring[:1]) for x in (a, b)])
    lake.overwrite(lake.read("gold/user_segments", version=lake.version("gold/user_segments"))
                   .withColumn("segment", rotate[F.col("segment")]), "gold/user_segments")
    config.set("segment.model_uri", f"models:/{config.get('registry.segments')}@"
                                    f"{config.get('registry.alias')}")
    assigned = run_single("segment", config)
    assert {r[0] for r in lake.read("gold/user_segments").select("model_version")
            .distinct().collect()} == {version}
    left = total - len(gone)
    expected = (sizes[largest] - len(gone)) / left - sizes[largest] / total
    changes = {int(r["name"]): r["value"] for r in lake.read("gold/drift")
               .where("kind = 'segment_share_change'").collect()}
    assert changes[largest] == pytest.approx(expected, abs=1e-9)
    assert changes[min(set(sizes) - {largest})] == pytest.approx(
        sizes[min(set(sizes) - {largest})] * len(gone) / (left * total), abs=1e-9)
    assert assigned["drift.max_share_change"] == pytest.approx(abs(expected), abs=1e-9)
    run = mlflow.get_run(mlflow.search_runs(
        experiment_names=[config.get("mlflow.experiment")], order_by=["start_time DESC"],
        max_results=1).iloc[0]["run_id"])
    assert run.data.tags["retrain_due"] == "true"
