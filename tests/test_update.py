"""`persona update` on a copy of the session's run: the models in use frozen, new events
brought in by MERGE, the same tables as a rebuild with those models, and nothing written
when nothing is new."""
from datetime import datetime, timedelta

import numpy as np
import pytest
from delta.tables import DeltaTable
from mlflow import MlflowClient
from pyspark.sql import functions as F

from persona import pipeline
from persona.config import Config
from persona.features.state import load_state
from persona.lake.catalog import load_encoder, load_kmeans
from persona.logs import get_logger
from persona.pipeline import UPDATES_TABLE, run_update
from persona.runtime.context import StageContext
from persona.runtime.tracking import use_experiment
from persona.segmentation.identity import segment_on
from persona.segmentation.models import MllibKMeans
from persona.stages import features
from persona.training.inference import encode
from tests.runs import lake_copy

pytestmark = pytest.mark.e2e

NEWCOMER = "newcomer-0001"
WRITTEN = ("silver/user_features", "gold/user_embeddings", "gold/user_segments",
           "gold/segment_history", "gold/segment_profiles", "gold/drift", UPDATES_TABLE)


@pytest.fixture(scope="module")
def updated(generated, spark):
    """The run's lake updated once as it is, then again after a day of new events for one
    user and a user never seen; then once more with nothing new."""
    config, lake = lake_copy(generated.config, spark, "update", with_registry=True)
    before = lake.read("silver/user_features").first()
    first = run_update(config)

    events = lake.read("bronze/events")
    latest = events.agg(F.max("event_time")).first()[0]
    someone = events.where(F.col("event_type") == "purchase").first()["user_id"]
    day = latest + timedelta(days=1)
    lake.append(events.where((F.col("user_id") == someone) & (F.col("event_type") == "purchase"))
                .limit(3).withColumn("event_time", F.lit(day))
                .unionByName(events.limit(4).withColumn("user_id", F.lit(NEWCOMER))
                             .withColumn("event_time", F.lit(day))), "bronze/events")
    started = datetime.utcnow()
    strict = Config(config.data)  # every feature that moved at all counts as drifted
    strict.set("retrain.max_psi", 0)
    strict.set("retrain.max_drifted_share", 0)
    second = run_update(strict)
    versions = {t: lake.version(t) for t in WRITTEN}
    third = run_update(strict)
    return dict(config=strict, lake=lake, before=before, first=first, second=second,
                third=third, versions=versions, someone=someone, day=day, started=started)


def test_first_update_on_the_data_the_models_saw_changes_no_row(updated):
    """The frozen feature set gives the fitted build's values bit for bit."""
    first = updated["first"]
    for stage in ("features", "segment"):
        assert {k: first[stage][f"rows_{k}"] for k in ("inserted", "updated", "deleted")} == \
            {"inserted": 0, "updated": 0, "deleted": 0}, stage
    assert first["features"]["users"] > 0
    assert first["features"]["users_recomputed"] == 0  # no history read again


def test_update_brings_new_events_in_with_the_models_in_use(updated):
    lake, second = updated["lake"], updated["second"]
    assert second["features"]["rows_inserted"] == 1  # the newcomer
    # as_of moved, so every row changed: the table was replaced, counted as a MERGE would.
    assert (second["features"]["rows_updated"], second["features"]["rows_deleted"]) == \
        (second["features"]["users"] - 1, 0)
    assert DeltaTable.forPath(lake.spark, lake.path("silver/user_features")) \
        .history(1).first()["operation"] == "WRITE"
    # Only the users whose bronze rows changed, or whose content is dated after the last
    # as_of, have their history read again; the others' features are aged.
    assert 2 <= second["features"]["users_recomputed"] < second["features"]["users"] / 10
    assert second["segment"]["rows_inserted"] == 1
    table = lake.read("silver/user_features")
    assert {r[0] for r in table.select("feature_set_version").distinct().collect()} == \
        {updated["before"]["feature_set_version"]}
    assert table.select(F.max("as_of")).first()[0] == updated["day"]
    someone = table.where(F.col("user_id") == updated["someone"]).first()
    assert someone["recency_days"] == 0.0  # bought on the new day


def test_update_equals_a_rebuild_with_the_frozen_models(updated, spark):
    """Every user's features, embedding and segment in the updated tables are those that
    the frozen feature set, the encoder and the K-Means model in use give from scratch."""
    config, lake = updated["config"], updated["lake"]
    ctx = StageContext(config, spark, lake, get_logger("test"))
    state = load_state(lake, updated["before"]["feature_set_version"])
    got = lake.read("silver/user_features").select("user_id", F.col("features").alias("got"))
    with features.building(ctx, state) as built:
        rebuilt = features._table(built).select("user_id", "features")
        pairs = got.join(rebuilt, "user_id", "full_outer").collect()
    assert len(pairs) == lake.read("silver/user_features").count()
    assert all(p["got"] is not None and p["features"] is not None for p in pairs)
    assert max(np.abs(np.subtract(p["got"], p["features"])).max() for p in pairs) <= 1e-6

    encoder = lake.read("gold/user_embeddings").select("model_version").distinct().collect()
    assert len(encoder) == 1
    use_experiment(config)
    alias = config.get("registry.alias")
    version = MlflowClient().get_model_version_by_alias(config.get("registry.encoder"), alias)
    architecture, weights = load_encoder(f"models:/{version.name}/{version.version}")
    embedded = encode(lake.read("silver/user_features"), architecture, weights)
    kmeans, _ = load_kmeans(f"models:/{config.get('registry.segments')}@{alias}")
    labels = {r["user_id"]: r["segment"] for r in MllibKMeans(kmeans).assign(
        embedded.select("user_id", "embedding")).collect()}
    segments = {r["user_id"]: r["segment"] for r in lake.read("gold/user_segments").collect()}
    assert set(labels) == set(segments)
    # One segment id per K-Means label, the same for every user of that label.
    ids = {}
    for user, label in labels.items():
        assert ids.setdefault(label, segments[user]) == segments[user]


def test_history_has_the_newcomer_from_the_update_on(updated):
    lake = updated["lake"]
    before = segment_on(lake, [NEWCOMER], updated["started"] - timedelta(seconds=1)).collect()
    now = segment_on(lake, [NEWCOMER], datetime.utcnow()).collect()
    assert before == []
    assert [r["segment"] for r in now] == [
        lake.read("gold/user_segments").where(F.col("user_id") == NEWCOMER).first()["segment"]]


def test_update_says_when_retraining_is_due_and_trains_nothing(updated):
    second = updated["second"]
    assert second["embed"]["retrain_due"] == 1.0
    assert set(second) == {"features", "embed", "segment"}
    last = updated["lake"].read(UPDATES_TABLE).orderBy(F.desc("at")).first()
    assert (last["retrain_due"], last["retrained"]) == (True, False)


def test_update_with_nothing_new_writes_no_table(updated):
    assert updated["third"] == {}
    lake = updated["lake"]
    assert {t: lake.version(t) for t in WRITTEN} == updated["versions"]
    assert lake.read(UPDATES_TABLE).count() == 2


def test_retrain_auto_runs_the_retraining_left_waiting(updated, monkeypatch):
    """Retraining was due at the last update; with retrain.auto on, the next update runs the
    training stages in order (recorded here, not run) and says so in meta/updates."""
    ran = []
    monkeypatch.setattr(pipeline, "TRAINING", {
        name: (lambda ctx, name=name: ran.append(name)) for name in pipeline.TRAINING})
    config = Config(updated["config"].data)
    config.set("retrain.auto", True)
    results = run_update(config)
    assert ran == ["features", "train", "embed", "segment"]
    assert list(results) == [f"retrain_{n}" for n in ran]
    last = updated["lake"].read(UPDATES_TABLE).orderBy(F.desc("at")).first()
    assert (last["retrain_due"], last["retrained"]) == (True, True)
    assert run_update(config) == {}  # done: nothing new any more
