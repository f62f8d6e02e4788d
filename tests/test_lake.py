"""The lake's shared pieces: which command writes each table, content versions, the
meta/models catalog, and timestamps read from the configuration."""
import hashlib
from datetime import datetime

import numpy as np
import pytest
import yaml

from persona.cli import main
from persona.errors import PersonaError
from persona.lake.catalog import MODELS_TABLE, list_model
from persona.lake.tables import Lake, writer
from persona.lake.versions import content_version
from persona.stages import STAGES
from persona.timestamps import parse_timestamp
from tests.conftest import make_config


@pytest.mark.unit
@pytest.mark.parametrize("table, stage", [
    ("bronze/events", "ingest"), ("bronze/clicks", "ingest"), ("quarantine/users", "ingest"),
    ("silver/user_features", "features"), ("silver/user_labels", "features"),
    ("silver/user_aggregates", "features"),
    ("gold/user_embeddings", "embed"), ("gold/user_segments", "segment"),
    ("gold/segment_profiles", "segment"), ("gold/user_tags", "tag"),
    ("gold/tag_metrics", "tag"), ("gold/segment_quality", "evaluate"), ("meta/models", "train"),
    ("gold/unknown", None),
])
def test_each_table_names_the_command_that_writes_it(table, stage):
    assert writer(table) == stage
    assert stage is None or stage in STAGES


@pytest.mark.unit
def test_missing_table_error_names_its_writer(spark, tmp_path):
    lake = Lake(spark, str(tmp_path))
    with pytest.raises(PersonaError, match=f"table gold/tag_metrics not found under "
                                           f"lake.root={tmp_path}: run `persona tag` first$"):
        lake.read("gold/tag_metrics")
    with pytest.raises(PersonaError, match="gold/segment_quality .*run `persona evaluate` first"):
        lake.read("gold/segment_quality")
    with pytest.raises(PersonaError, match=r"gold/unknown not found under lake.root=\S+$"):
        lake.read("gold/unknown")


@pytest.mark.unit
def test_content_version_is_the_digest_of_the_json_then_the_arrays():
    # The digests the engine has always written, so existing versions stay valid.
    assert content_version({"b": 1, "a": [2]}, sort_keys=True) == hashlib.sha1(
        b'{"a": [2], "b": 1}').hexdigest()[:12]
    assert content_version(["enc", {"b": 1, "a": 2}]) == hashlib.sha1(
        b'["enc", {"b": 1, "a": 2}]').hexdigest()[:12]
    weights = [np.array([[1, 2], [3, 4]], dtype=np.float32).T]  # not contiguous
    digest = hashlib.sha1(b'["m"]')
    digest.update(np.array([[1, 3], [2, 4]], dtype=np.float32).tobytes())
    assert content_version(["m"], arrays=weights) == digest.hexdigest()[:12]
    assert content_version(["m"], arrays=[weights[0] + 1]) != content_version(["m"], weights)


@pytest.mark.unit
def test_a_model_is_listed_once_with_every_catalog_column(spark, tmp_path):
    lake = Lake(spark, str(tmp_path))
    assert list_model(lake, "v1", "autoencoder", "runs:/r1/encoder", feature_set_version="fs",
                      input_dim=10, latent_dim=4, final_loss=0.5)
    assert list_model(lake, "m1", "umap", "runs:/r2/manifold", feature_set_version="fs",
                      input_dim=4, latent_dim=2, input_model_version="v1")
    assert not list_model(lake, "v1", "autoencoder", "runs:/r3/encoder",
                          feature_set_version="fs", input_dim=10, latent_dim=4)
    rows = {r["model_version"]: r.asDict() for r in lake.read(MODELS_TABLE).collect()}
    assert set(rows) == {"v1", "m1"}
    assert lake.read(MODELS_TABLE).columns == [
        "model_version", "kind", "created_at", "model_uri", "feature_set_version", "input_dim",
        "latent_dim", "final_loss", "input_model_version", "dp_epsilon", "dp_delta"]
    assert {k: v for k, v in rows["v1"].items() if k != "created_at"} == {
        "model_version": "v1", "kind": "autoencoder", "model_uri": "runs:/r1/encoder",
        "feature_set_version": "fs", "input_dim": 10, "latent_dim": 4, "final_loss": 0.5,
        "input_model_version": None, "dp_epsilon": None, "dp_delta": None}
    assert rows["m1"]["final_loss"] is None and rows["m1"]["input_model_version"] == "v1"
    assert isinstance(rows["m1"]["created_at"], datetime)


@pytest.mark.unit
@pytest.mark.parametrize("value, expected", [
    ("2025-03-15", datetime(2025, 3, 15)),
    ("2025-03-15 12:30:00", datetime(2025, 3, 15, 12, 30)),
    (datetime(2025, 3, 15, 6).date(), datetime(2025, 3, 15)),  # YAML reads a bare date
])
def test_timestamps_from_the_configuration(spark, value, expected):
    assert parse_timestamp(spark, value, "features.as_of") == expected


@pytest.mark.unit
@pytest.mark.parametrize("value", ["next week", "2025-13-45",
                                   "2025-01-01' AS TIMESTAMP) AS t, (SELECT '1"])
def test_a_value_that_is_not_a_timestamp_is_refused(spark, value):
    with pytest.raises(PersonaError, match=r"^tags\.churn\.cutoff: not a timestamp: "):
        parse_timestamp(spark, value, "tags.churn.cutoff")


def cli_error(capsys, config, tmp_path, *command) -> str:
    """Run ``persona COMMAND`` on ``config``; the one line it printed, having exited 2."""
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    assert main([*command, "--conf", str(conf)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return lines[-1]


@pytest.mark.stage
def test_unparseable_as_of_and_cutoff_are_one_error_line(spark, tmp_path, capsys):
    config = make_config(str(tmp_path), features={"as_of": "2025-02-30"},
                         tags={"churn": {"label": "churn", "cutoff": "soon"}})
    lake = Lake(spark, config.path_of("lake.root"))
    lake.overwrite(spark.createDataFrame(
        [("u1", datetime(2025, 1, 1), "purchase", 5.0)],
        "user_id string, event_time timestamp, event_type string, amount double"),
        "bronze/events")
    lake.overwrite(spark.createDataFrame([("u1", [0.5], 1.0, None)],
                                         "user_id string, features array<float>, a double, "
                                         "as_of timestamp"), "silver/user_features")
    assert cli_error(capsys, config, tmp_path, "features") == (
        "persona: error: features.as_of: not a timestamp: '2025-02-30'")
    assert cli_error(capsys, config, tmp_path, "tag") == (
        "persona: error: tags.churn.cutoff: not a timestamp: 'soon'")


@pytest.mark.unit
def test_changed_keys_come_from_the_bronze_change_feed(spark, tmp_path):
    """A bronze table records its changes from its creation: the users of the rows appended,
    replaced or deleted after a version; a table made without the feed gives None."""
    lake = Lake(spark, str(tmp_path))
    rows = lambda *pairs: spark.createDataFrame(pairs, "user_id string, batch int")
    lake.append(rows(("a", 0), ("b", 0)), "bronze/events")  # version 0
    lake.append(rows(("c", 1)), "bronze/events")  # 1
    lake.replace_where(rows(("c", 1), ("d", 1)), "bronze/events", "batch = 1")  # 2
    keys, count = lake.changed_keys({"bronze/events": 0}, {"bronze/events": 2})
    assert (sorted(r[0] for r in keys.collect()), count) == (["c", "d"], 2)
    keys, count = lake.changed_keys({"bronze/events": 2}, {"bronze/events": 2})
    assert (keys.collect(), count) == ([], 0)
    lake.append(rows(("a", 0)), "gold/other")  # no change feed
    lake.append(rows(("e", 1)), "gold/other")
    assert lake.changed_keys({"gold/other": 0}, {"gold/other": 1}) is None
