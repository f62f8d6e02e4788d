"""persona export writes the audiences of the segments asked for and leaves out those below
privacy.min_segment_size; segment profiles and the report suppress them too."""
import csv
import glob
import os

import mlflow
import pytest
import yaml

from persona.cli import main
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.runtime.tracking import tracking_uri
from persona.segmentation.profiles import suppress_profiles
from persona.stages.report import REPORT
from persona.stages.segment import PROFILE_SCHEMA
from tests.conftest import make_config
from tests.test_cli import error_line

pytestmark = pytest.mark.stage

SIZES = {0: 6, 1: 2, 2: 4}  # segment 1 is below the minimum of 3
HEADER = "user_id,segment,segment_name"


@pytest.fixture()
def lake(spark, tmp_path):
    config = make_config(str(tmp_path))
    config.set("privacy.min_segment_size", 3)
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    lake = Lake(spark, config.path_of("lake.root"))
    users = [(f"{s}{'%02d' % i}".ljust(64, "a"), s) for s, n in SIZES.items() for i in range(n)]
    lake.overwrite(spark.createDataFrame(users, "user_id string, segment int"),
                   "gold/user_segments")
    lake.overwrite(spark.createDataFrame([(0, "weekend, sports"), (1, "night"), (2, "app")],
                                         "segment int, name string"), "gold/segment_profiles")
    return config, str(conf), lake, users


def test_export_writes_the_segments_big_enough(lake, tmp_path, caplog):
    config, conf, _, users = lake
    out = str(tmp_path / "audiences")
    with caplog.at_level("INFO", logger="persona"):
        assert main(["export", "--conf", conf, "--segments", "all", "--out", out]) == 0
    assert sorted(f for f in os.listdir(out) if f.startswith("audience=")) == [
        "audience=0", "audience=2"]
    rows = []
    for path in glob.glob(f"{out}/audience=*/*.csv"):
        with open(path, encoding="utf-8") as fh:
            assert fh.readline().strip() == HEADER
            rows += list(csv.reader(fh))
    names = {0: "weekend, sports", 2: "app"}
    assert sorted(rows) == sorted([u, str(s), names[s]] for u, s in users if s != 1)
    assert "segment 1: 2 users, below privacy.min_segment_size 3, not exported" in caplog.text
    mlflow.set_tracking_uri(tracking_uri(config))
    (run,) = mlflow.search_runs(experiment_names=[config.get("mlflow.experiment")],
                                filter_string="tags.`persona.stage` = 'export'",
                                output_format="list")
    assert {k: run.data.metrics[k] for k in ("segments_exported", "users_exported",
                                             "segments_suppressed")} == {
        "segments_exported": 2, "users_exported": 10, "segments_suppressed": 1}


def test_export_by_default_writes_under_the_lake(lake):
    _, conf, lake_, _ = lake
    assert main(["export", "--conf", conf, "--segments", "2"]) == 0
    (stamp,) = os.listdir(os.path.join(lake_.root, "exports"))
    assert os.listdir(os.path.join(lake_.root, "exports", stamp, "audience=2"))


def test_export_errors_are_one_line(lake, tmp_path, capsys):
    _, conf, _, _ = lake
    assert main(["export", "--conf", conf, "--segments", "0,9"]) == 2
    assert error_line(capsys) == ("persona: error: --segments: no segment 9 in "
                                  "gold/user_segments (its segments: 0, 1, 2)")
    assert main(["export", "--conf", conf, "--segments", "1"]) == 2
    assert error_line(capsys) == ("persona: error: every segment asked for has fewer than "
                                  "privacy.min_segment_size=3 users: nothing exported")
    assert main(["export", "--conf", conf, "--segments", "two"]) == 2
    assert error_line(capsys) == ("persona: error: --segments: expected all or segment ids "
                                  "separated by commas, got 'two'")
    assert main(["export", "--conf", conf, "--segments", "0", "--out", str(tmp_path)]) == 2
    assert error_line(capsys) == (f"persona: error: --out: {tmp_path} already exists: export "
                                  f"writes a new folder")


def _profile(segment, size, name="big spenders"):
    """A gold/segment_profiles row of a segment of ``size`` users out of 60."""
    return (segment, size, size / 60, "high spend", [("spend", 2.0, 1.0, 1.5)],
            {"spend": 2.0}, {"spend": 1.0}, "v1", name, ["spend 2 vs 1"],
            {"spend": 1.5}, [("spend > 1", size, 0.9, 0.9)], 0.8, 0.95)


def test_profiles_of_small_segments_keep_only_their_size(spark):
    profiles = spark.createDataFrame([_profile(0, 48), _profile(1, 12)], PROFILE_SCHEMA)
    out = {r["segment"]: r.asDict() for r in suppress_profiles(profiles, 20).collect()}
    assert out[0]["suppressed"] is False and out[0]["name"] == "big spenders"
    assert out[0]["feature_means"] == {"spend": 2.0}
    small = out[1]
    assert small["suppressed"] is True
    assert small["name"] == "segment 1 (suppressed)"
    assert (small["size"], small["share"], small["population_means"]) == (12, 0.2, {"spend": 1.0})
    assert small["description"] is None and small["surrogate_recall"] is None
    for column in ("top_features", "highlights", "rules"):
        assert small[column] == []
    for column in ("feature_means", "feature_z"):
        assert small[column] == {}


def test_report_leaves_small_segments_out(spark, tmp_path, capsys):
    config = make_config(str(tmp_path))
    config.set("privacy.min_segment_size", 20)
    lake = Lake(spark, config.path_of("lake.root"))
    sizes = {0: 48, 1: 12}
    users = [(f"u{s}-{i}", s, [float(s), float(i % 3), 1.0]) for s, n in sizes.items()
             for i in range(n)]
    lake.overwrite(spark.createDataFrame([(u, e) for u, _, e in users],
                                         "user_id string, embedding array<float>"),
                   "gold/user_embeddings")
    lake.overwrite(spark.createDataFrame([(u, s) for u, s, _ in users],
                                         "user_id string, segment int"), "gold/user_segments")
    lake.overwrite(suppress_profiles(spark.createDataFrame(
        [_profile(0, 48), _profile(1, 12, "night owls")], PROFILE_SCHEMA), 20),
        "gold/segment_profiles")
    metrics = run_single("report", config)
    html = open(os.path.join(lake.root, REPORT), encoding="utf-8").read()
    assert metrics["segments"] == 1
    assert "segment 1: 12 users, below privacy.min_segment_size 20, not shown" in html
    assert html.count('<article class="card"') == 1 and "big spenders" in html
    assert "segment 1 (suppressed)" not in html and "night owls" not in html
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    assert main(["report", "--conf", str(conf), "--set", "privacy.min_segment_size=60"]) == 2
    assert error_line(capsys) == ("persona: error: every segment has fewer than "
                                  "privacy.min_segment_size=60 users: nothing to report")
