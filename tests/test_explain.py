"""Segment explanations on hand-made numbers and tables whose answers were worked out by hand."""
import logging
import os

import mlflow
import pytest
from pyspark.sql import functions as F

from persona.lake.tables import Lake
from persona.runtime.context import StageContext
from persona.runtime.tracking import stage_run
from persona.segmentation import explain as ex
from persona.segmentation.profiles import feature_stats
from persona.stages import segment
from tests.conftest import make_config

pytestmark = pytest.mark.stage


def test_values_read_in_their_own_units():
    assert ex.format_value("time_weekend", 0.614) == "61%"
    assert ex.format_value("cat_home_decor", 0.05) == "5%"
    assert ex.format_value("attr_plan_pro", 0.4) == "40%"
    assert ex.format_value("attr_age", 38.46, numeric_attributes=["age"]) == "38.5"
    assert ex.format_value("recency_days", 3.14) == "3.1 days"
    assert ex.format_value("recency_days", 40.2) == "40 days"
    assert ex.format_value("monetary", 1204.4) == "1,204"
    assert ex.format_value("avg_order_value", 8.5) == "8.50"
    assert ex.format_value("content_avg_rating", 4.23) == "4.2"
    assert ex.format_value("n_events", 12.0) == "12"
    assert ex.feature_label("cat_home_decor") == "home decor share"
    assert ex.feature_label("monetary") == "spend"
    assert ex.feature_label("w30_event_share") == "share of events in the last 30 days"
    assert ex.format_value("w7_spend_share", 0.25) == "25%"
    assert ex.format_value("mean_gap_days", 11.5) == "12 days"


def test_standardised_differences_skip_constant_features():
    population = {"mean_monetary": 100.0, "std_monetary": 50.0,
                  "mean_time_weekend": 0.3, "std_time_weekend": 0.2,
                  "mean_n_events": 5.0, "std_n_events": 0.0}
    means = {"monetary": 200.0, "time_weekend": 0.1, "n_events": 5.0}
    z = ex.standardised_differences(means, population, ["monetary", "time_weekend", "n_events"])
    assert z == pytest.approx({"monetary": 2.0, "time_weekend": -1.0})
    assert ex.highlights(means, population, z) == [
        "spend 200 vs 100 overall (+2.0 sd)", "weekend share 10% vs 30% overall (-1.0 sd)"]
    assert ex.ranked({"text_0": 3.0, "monetary": -2.0, "cat_books": 2.0}) == [
        "cat_books", "monetary"]


def test_feature_stats_per_segment_and_population(spark):
    # segment 0: a = 1, 3 (mean 2), b = 10, None (mean 10, the null left out);
    # segment 1: a = 5, b = 4. Population: a = 1, 3, 5 (mean 3, std sqrt(8/3)); b = 10, 4
    # (mean 7, std 3).
    joined = spark.createDataFrame(
        [("u1", 0, 1.0, 10.0), ("u2", 0, 3.0, None), ("u3", 1, 5.0, 4.0)],
        "user_id string, segment int, a double, b double")
    per_segment, population = feature_stats(joined, ["a", "b"])
    assert per_segment == [{"segment": 0, "size": 2, "a": 2.0, "b": 10.0},
                           {"segment": 1, "size": 1, "a": 5.0, "b": 4.0}]
    assert population == pytest.approx({"mean_a": 3.0, "std_a": (8 / 3) ** 0.5,
                                        "mean_b": 7.0, "std_b": 3.0})


def test_channel_shares_read_as_shares():
    assert ex.feature_label("channel_mobile_app") == "mobile app channel share"
    assert ex.format_value("channel_web", 0.25) == "25%"
    assert ex.name_phrases({"channel_web": 1.0, "cat_books": 0.5}) == ["web channel", "books"]


def test_readable_columns_leave_out_text_and_sequence_groups():
    columns = ["monetary", "topic_a", "topic_b", "cat_books", "text_7", "x1"]
    groups = {"behaviour": ["monetary"], "text": ["topic_a", "topic_b"], "sequence": [],
              "category": ["cat_books"]}
    assert ex.readable_columns(columns, groups) == ["monetary", "cat_books", "x1"]
    # an imported table has no groups: only learned text dimensions by name are left out
    assert ex.readable_columns(columns, {}) == ["monetary", "topic_a", "topic_b",
                                                "cat_books", "x1"]


def test_description_in_the_data_units():
    population = {"mean_monetary": 100.0, "std_monetary": 50.0,
                  "mean_time_weekend": 0.3, "std_time_weekend": 0.2,
                  "mean_n_events": 5.0, "std_n_events": 2.0,
                  "mean_text_0": 0.0, "std_text_0": 0.1}
    means = {"monetary": 200.0, "time_weekend": 0.1, "n_events": 6.0, "text_0": 0.3}
    z = ex.standardised_differences(means, population,
                                    ["monetary", "time_weekend", "n_events", "text_0"])
    top, description = ex.describe(means, population, z, top=2)
    # text_0 is furthest (+3 sd) but has no meaning to read
    assert description == "high spend (200 vs 100), low weekend share (10% vs 30%)"
    assert top == [
        {"feature": "monetary", "segment_mean": 200.0, "population_mean": 100.0, "z": 2.0},
        {"feature": "time_weekend", "segment_mean": 0.1, "population_mean": 0.3,
         "z": pytest.approx(-1.0)}]


def test_names_take_the_strongest_phrase_of_each_family():
    z = {"monetary": 2.0, "avg_order_value": 1.5, "type_view": -1.2, "time_weekend": 1.0,
         "cat_home_decor": 0.8, "attr_plan_missing": 0.7, "n_events": 0.1}
    # avg_order_value repeats the spend family; a low view share and a missing flag say
    # nothing; n_events is below the threshold.
    assert ex.name_phrases(z) == ["high spend", "weekend", "home decor"]
    assert ex.name_phrases({"recency_days": 1.4, "content_avg_rating": -1.1}) == [
        "lapsed", "unhappy reviewers"]
    assert ex.name_phrases({"monetary": 0.1}) == []
    # Trailing windows share one family; learned text dimensions have no words.
    assert ex.name_phrases({"w30_event_share": 1.0, "w7_spend_share": 0.9, "text_3": 0.8,
                            "n_items": -0.5}) == ["busy lately", "narrow range"]


def test_segment_names_are_distinct():
    names = ex.segment_names({
        0: {"monetary": 2.0, "time_weekend": 1.0, "cat_books": 0.9, "cat_toys": 0.5},
        1: {"monetary": 1.9, "time_weekend": 0.9, "cat_books": 0.8, "cat_sports": 0.4},
        2: {"n_events": 0.05},
        3: {"monetary": 1.0},
        4: {"monetary": 1.2},
    })
    assert names[0] == "high spend, weekend, books, toys"
    assert names[1] == "high spend, weekend, books, sports"
    assert names[2] == "typical users"
    assert names[3] == "high spend (3)" and names[4] == "high spend (4)"


# time_weekend <= 0.4 → segment 0; else monetary <= 100 → 1, monetary > 100 → 1.
TREE = {"feature": 0, "threshold": 0.4, "counts": [45.0, 55.0],
        "left": {"prediction": 0, "counts": [40.0, 10.0]},
        "right": {"feature": 1, "threshold": 100.0, "counts": [5.0, 45.0],
                  "left": {"prediction": 1, "counts": [5.0, 30.0]},
                  "right": {"prediction": 1, "counts": [0.0, 15.0]}}}


def test_rules_read_from_the_tree():
    rules = ex.segment_rules(TREE, ["time_weekend", "monetary"])
    assert rules[0] == [{"rule": "weekend share ≤ 40%", "users": 50,
                         "coverage": 40 / 45, "precision": 40 / 50}]
    assert rules[1] == [
        {"rule": "weekend share > 40% and spend ≤ 100", "users": 35,
         "coverage": 30 / 55, "precision": 30 / 35},
        {"rule": "weekend share > 40% and spend > 100", "users": 15,
         "coverage": 15 / 55, "precision": 1.0}]


def test_bounds_on_one_feature_become_a_range():
    path = [(0, ">", 0.2), (1, "<=", 50.0), (0, "<=", 0.5), (0, ">", 0.3)]
    assert ex._conditions(path, ["time_weekend", "monetary"], ()) == \
        "30% < weekend share ≤ 50% and spend ≤ 50"


def _users(n_per_segment=40):
    """Segment 0 shops at weekends and spends little, segment 1 spends a lot on weekdays."""
    rows = []
    for i in range(n_per_segment):
        rows.append((f"a{i:03d}", 0.80 + 0.004 * i, 20.0 + i, 0))
        rows.append((f"b{i:03d}", 0.10 + 0.004 * i, 500.0 + 5 * i, 1))
    return rows


def test_surrogate_tree_recovers_separable_segments(spark):
    data = spark.createDataFrame(_users(), ["user_id", "time_weekend", "monetary", "segment"])
    surrogate = ex.fit_surrogate(data, ["time_weekend", "monetary"], depth=2, seed=7,
                                 holdout=0.25)
    assert surrogate.holdout_users > 0
    assert surrogate.fidelity == 1.0
    assert surrogate.recall == {0: 1.0, 1: 1.0}
    rules = ex.segment_rules(surrogate.tree, ["time_weekend", "monetary"])
    assert [r["precision"] for r in rules[0] + rules[1]] == [1.0, 1.0]
    assert rules[0][0]["coverage"] == 1.0 and rules[1][0]["coverage"] == 1.0


def test_surrogate_tree_learns_from_a_sample_of_at_most_max_users(spark):
    data = spark.createDataFrame(_users(), ["user_id", "time_weekend", "monetary", "segment"])
    everyone = ex.fit_surrogate(data, ["time_weekend", "monetary"], depth=2, holdout=0.25)
    sampled = ex.fit_surrogate(data, ["time_weekend", "monetary"], depth=2, holdout=0.25,
                               max_users=20)
    learned = sum(everyone.tree["counts"])  # the users not held out, about 60 of 80
    assert 40 < learned < 80
    assert 5 < sum(sampled.tree["counts"]) < 35
    assert sampled.holdout_users == everyone.holdout_users  # the same held-out users
    assert sampled.fidelity == 1.0


def test_segment_profiles_carry_names_rules_and_fidelity(spark, tmp_path):
    config = make_config(str(tmp_path))
    config.set("privacy.min_segment_size", 1)  # two segments of 40 users, both shown
    lake = Lake(spark, config.path_of("lake.root"))
    users = spark.createDataFrame(_users(), ["user_id", "time_weekend", "monetary", "segment"])
    lake.overwrite(users.drop("segment"), "silver/user_features")
    ctx = StageContext(config, spark, lake, logging.getLogger("test"))
    with stage_run(config, "segment") as run:
        ctx.run_id = run.info.run_id
        profiles = {r["segment"]: r for r in segment._profiles(
            ctx, users.select("user_id", "segment"), "v1").collect()}
    assert profiles[0]["name"] == "weekend, low spend"
    assert profiles[1]["name"] == "weekday, high spend"
    assert profiles[0]["size"] == profiles[1]["size"] == 40
    # weekend share: segment 0 averages 0.878, everyone 0.528, population sd 0.35.
    assert profiles[0]["feature_z"]["time_weekend"] == pytest.approx(1.0, abs=0.01)
    assert profiles[0]["highlights"][0].startswith("weekend share 88% vs 53% overall")
    assert profiles[0]["surrogate_fidelity"] == 1.0
    assert profiles[0]["rules"][0]["precision"] == 1.0
    artifacts = mlflow.artifacts.list_artifacts(run_id=run.info.run_id)
    assert "surrogate_tree.json" in {os.path.basename(a.path) for a in artifacts}


def test_segment_profiles_read_only_columns_with_a_meaning(spark, tmp_path):
    """A text-vector column (listed in the text group of the features' metadata) that
    separates the segments more than any other (z = 1 against 0.99) is left out of names,
    descriptions, highlights and rules; its statistics stay in feature_z."""
    config = make_config(str(tmp_path))
    config.set("privacy.min_segment_size", 1)  # two segments of 40 users, both shown
    lake = Lake(spark, config.path_of("lake.root"))
    users = spark.createDataFrame([(*u, 5.0 if u[3] == 0 else -5.0) for u in _users()],
                                  ["user_id", "time_weekend", "monetary", "segment", "topic"])
    groups = [{"name": "time", "columns": ["time_weekend"]},
              {"name": "behaviour", "columns": ["monetary"]},
              {"name": "text", "columns": ["topic"]}]
    features = users.drop("segment").withColumn(
        "features", F.array("time_weekend", "monetary", "topic").alias(
            "features", metadata={"groups": groups}))
    lake.overwrite(features, "silver/user_features")
    ctx = StageContext(config, spark, lake, logging.getLogger("test"))
    with stage_run(config, "segment") as run:
        ctx.run_id = run.info.run_id
        profiles = {r["segment"]: r for r in segment._profiles(
            ctx, users.select("user_id", "segment"), "v1").collect()}
    # weekend share: 0.878 vs 0.528 (+0.99 sd); spend: 39.5 vs 318.5 (-0.99 sd)
    assert profiles[0]["description"] == "high weekend share (88% vs 53%), low spend (40 vs 318)"
    assert [f["feature"] for f in profiles[0]["top_features"]] == ["time_weekend", "monetary"]
    assert profiles[0]["name"] == "weekend, low spend"
    assert profiles[1]["name"] == "weekday, high spend"
    for p in profiles.values():
        assert not any("topic" in h for h in p["highlights"])
        assert not any("topic" in r["rule"] for r in p["rules"])
    assert profiles[0]["feature_z"]["topic"] == pytest.approx(1.0)
