"""Feature groups on hand-made events whose values were worked out by hand."""
import math
from datetime import datetime, timedelta

import pytest
from pyspark.sql import functions as F

from persona.features import build as fx
from persona.runtime.spark import column_cells

pytestmark = pytest.mark.unit

AS_OF = datetime(2025, 1, 10)
EVENT_COLUMNS = ["user_id", "event_time", "event_type", "category", "amount", "quantity",
                 "session_id"]
EVENTS = [
    # 2025-01-01 is a Wednesday, 2025-01-04 a Saturday, 2025-01-09 a Thursday.
    ("u1", datetime(2025, 1, 1, 8, 0), "view", "A", None, None, "s1"),
    ("u1", datetime(2025, 1, 1, 8, 30), "purchase", "A", 30.0, 3.0, "s1"),
    ("u1", datetime(2025, 1, 4, 20, 0), "purchase", "B", 10.0, 1.0, "s2"),
    ("u2", datetime(2025, 1, 9, 0, 0), "view", "B", None, None, "s3"),
]


@pytest.fixture(scope="module")
def events(spark):
    return spark.createDataFrame(EVENTS, EVENT_COLUMNS)


def by_user(df):
    return {r["user_id"]: r.asDict() for r in df.collect()}


def test_behaviour(events):
    rows = by_user(fx.behaviour(events, AS_OF, ["purchase"]))
    u1, u2 = rows["u1"], rows["u2"]
    assert (u1["n_events"], u1["n_sessions"], u1["active_days"]) == (3, 2, 2)
    assert (u1["n_purchases"], u1["monetary"], u1["quantity"]) == (2, 40.0, 4.0)
    assert u1["avg_order_value"] == 20.0
    assert u1["recency_days"] == pytest.approx(5 + 4 / 24)   # Jan 4 20:00 → Jan 10 00:00
    assert u1["tenure_days"] == pytest.approx(8 + 16 / 24)   # Jan 1 08:00 → Jan 10 00:00
    assert (u2["n_purchases"], u2["monetary"], u2["avg_order_value"]) == (0, 0.0, 0.0)
    assert u2["recency_days"] == pytest.approx(1.0)


def test_event_mix_and_categories(events):
    mix = by_user(fx.event_mix(events, ["view", "purchase"]))
    assert mix["u1"]["type_view"] == pytest.approx(1 / 3)
    assert mix["u1"]["type_purchase"] == pytest.approx(2 / 3)
    assert mix["u2"]["type_view"] == 1.0
    cats = by_user(fx.category_affinity(events, ["A", "B"]))
    assert cats["u1"]["cat_a"] == pytest.approx(2 / 3) and cats["u2"]["cat_b"] == 1.0


def test_channel_mix_shares_events_with_a_channel(spark):
    rows = [("u1", "web"), ("u1", "web"), ("u1", "app"), ("u1", None), ("u2", "store")]
    events = spark.createDataFrame(rows, "user_id string, channel string")
    mix = by_user(fx.channel_mix(events, ["web", "app"]))
    assert mix["u1"]["channel_web"] == pytest.approx(2 / 3)  # the unknown one is left out
    assert mix["u1"]["channel_app"] == pytest.approx(1 / 3)
    assert (mix["u2"]["channel_web"], mix["u2"]["channel_app"]) == (0.0, 0.0)  # not a top level


def test_time_profile(events):
    t = by_user(fx.time_profile(events))
    assert t["u1"]["time_morning"] == pytest.approx(2 / 3)
    assert t["u1"]["time_evening"] == pytest.approx(1 / 3)
    assert t["u1"]["time_weekend"] == pytest.approx(1 / 3)
    assert t["u2"]["time_night"] == 1.0 and t["u2"]["time_weekend"] == 0.0


def test_profile_attributes_handle_missing_and_rare_levels(spark):
    users = spark.createDataFrame(
        [("u1", "F", 30.0), ("u2", None, None), ("u3", "X", 50.0), ("u1", "F", 30.0)],
        "user_id string, gender string, age double")
    rows = by_user(fx.profile_attributes(users, {"gender": ["F"]}, ["age"]))
    assert len(rows) == 3  # duplicate user rows collapse
    assert rows["u1"] == {"user_id": "u1", "attr_age": 30.0, "attr_age_missing": 0.0,
                          "attr_gender_f": 1.0, "attr_gender_other": 0.0,
                          "attr_gender_missing": 0.0}
    assert rows["u2"]["attr_age"] == 40.0 and rows["u2"]["attr_age_missing"] == 1.0
    assert rows["u2"]["attr_gender_missing"] == 1.0
    assert rows["u3"]["attr_gender_other"] == 1.0


def test_column_cells_one_row_per_row_and_column(spark):
    df = spark.createDataFrame([("u1", 0, 1, None), ("u2", 1, 2, 3.5)],
                               "user_id string, segment int, a int, b double")
    cells = column_cells(df, {"a": F.col("a"), "b2": F.col("b") * 2}, keep=("segment",))
    assert cells.columns == ["segment", "position", "name", "value"]
    assert sorted(tuple(r) for r in cells.collect()) == [
        (0, 0, "a", 1.0), (0, 1, "b2", None), (1, 0, "a", 2.0), (1, 1, "b2", 7.0)]


def test_absent_counts_are_zero_and_absent_levels_the_mean(spark, events):
    content = spark.createDataFrame([("u1", 4.0, "great")], "user_id string, rating double, "
                                    "text string")
    joined = fx.join_groups(fx.behaviour(events, AS_OF, ["purchase"]),
                            [fx.content_stats(content)])
    stats = fx.column_stats(joined, ["content_n", "content_avg_rating"])
    assert stats["content_avg_rating"] == {"null_share": 0.5, "min": 4.0, "max": 4.0,
                                           "mean": 4.0}
    rows = by_user(fx.impute(joined, {c: s["mean"] for c, s in stats.items()}))
    assert rows["u1"]["content_n"] == 1.0 and rows["u1"]["content_avg_rating"] == 4.0
    assert rows["u2"]["content_n"] == 0.0           # a count: absent means none
    assert rows["u2"]["content_avg_rating"] == 4.0  # a level: absent means typical


def test_absent_levels_predicted_from_the_columns_every_user_has(spark):
    # rating = 1 + 2 x where present; u4 has none. text_0 = 3 - x where present; u1 has none.
    # content_n is absent for u4 (so not a predictor), const is constant (not a predictor).
    df = spark.createDataFrame(
        [("u1", 0.0, 5.0, 1.0, 1.0, None), ("u2", 1.0, 5.0, 2.0, 3.0, 2.0),
         ("u3", 2.0, 5.0, 1.0, 5.0, 1.0), ("u4", 3.0, 5.0, None, None, 0.0)],
        "user_id string, x double, const double, content_n double, "
        "content_avg_rating double, text_0 double")
    groups = {"behaviour": ["x", "const"], "content": ["content_n", "content_avg_rating"],
              "text": ["text_0"]}
    stats = fx.column_stats(df, [c for cols in groups.values() for c in cols])
    imputation = fx.fit_imputation(df, groups, stats, ridge=0.0)
    assert imputation.predictors == ["x"]
    assert sorted(imputation.models) == ["content_avg_rating", "text_0"]
    assert imputation.r2 == pytest.approx({"content_avg_rating": 1.0, "text_0": 1.0})
    rows = by_user(fx.impute(df, {c: s["mean"] for c, s in stats.items()}, imputation))
    assert rows["u4"]["content_avg_rating"] == pytest.approx(7.0)  # 1 + 2 * 3
    assert rows["u1"]["text_0"] == pytest.approx(3.0)              # 3 - 0
    assert rows["u4"]["content_n"] == 0.0                         # a count: absent means none
    assert rows["u2"]["content_avg_rating"] == 3.0                # present values kept
    fused = by_user(fx.fuse(df.select("user_id", "x"),
                            [df.select("user_id", "content_n", "content_avg_rating")]))
    assert fused["u4"]["content_avg_rating"] == pytest.approx(7.0, rel=1e-2)  # ridge 1e-3
    means = by_user(fx.fuse(df.select("user_id", "x"),
                            [df.select("user_id", "content_n", "content_avg_rating")],
                            method="mean"))
    assert means["u4"]["content_avg_rating"] == pytest.approx(3.0)  # mean of 1, 3, 5


def test_groups_without_levels_fuse_with_absent_values_0(spark, monkeypatch):
    # No column is a level (MEAN_IMPUTED): u2 has no shares row, so its shares are 0, and no
    # pass over the groups computes statistics.
    monkeypatch.setattr(fx, "column_stats", lambda *_: pytest.fail("statistics computed"))
    base = spark.createDataFrame([("u1", 2.0), ("u2", 5.0)], "user_id string, n_events double")
    shares = spark.createDataFrame([("u1", 0.25)], "user_id string, type_view double")
    fused = by_user(fx.fuse(base, [shares]))
    assert fused == {"u1": {"user_id": "u1", "n_events": 2.0, "type_view": 0.25},
                     "u2": {"user_id": "u2", "n_events": 5.0, "type_view": 0.0}}


def test_moments_merged_over_partitions_and_chunks(spark):
    rows = [(1.0, 2.0), (2.0, 4.0), (3.0, 5.0), (4.0, 9.0), (10.0, 0.0)]
    df = spark.createDataFrame(rows, "a double, b double").repartition(3)
    mean, cov = fx._moments(df, ["a", "b"], chunk=2)
    # a: mean 4, deviations -3 -2 -1 0 6; b: mean 4, deviations -2 0 1 5 -4
    assert mean == pytest.approx([4.0, 4.0])
    assert cov.tolist() == [pytest.approx([50 / 5, -19 / 5]),  # cross: 6 - 1 - 24
                            pytest.approx([-19 / 5, 46 / 5])]


def test_scaler_standardises_weights_groups_and_handles_constants(spark):
    df = spark.createDataFrame([(1.0, 5.0, 0.0), (2.0, 5.0, 1.0), (3.0, 5.0, 2.0)],
                               "x double, const double, y double")
    scaler = fx.Scaler.fit(df, {"a": ["x"], "b": ["const", "y"]})
    assert scaler.constant_columns() == ["const"]
    assert scaler.means["x"] == pytest.approx(2.0)
    assert scaler.stds["x"] == pytest.approx(math.sqrt(2 / 3))
    vectors = [r["features"] for r in scaler.transform(df).collect()]
    z = 1 / math.sqrt(2 / 3)
    weight_b = 1 / math.sqrt(2)  # group b has two columns
    assert vectors[0] == pytest.approx([-z, 0.0, -z * weight_b], rel=1e-5)
    assert vectors[2] == pytest.approx([z, 0.0, z * weight_b], rel=1e-5)
    halved = fx.Scaler.fit(df, {"a": ["x"], "b": ["const", "y"]}, group_weights={"b": 0.5})
    assert halved.weights == pytest.approx({"x": 1.0, "const": weight_b / 2, "y": weight_b / 2})


def test_scaler_logs_heavy_tailed_columns(spark):
    df = spark.createDataFrame([(0.0,), (math.e - 1,)], "monetary double")
    scaler = fx.Scaler.fit(df, {"behaviour": ["monetary"]})
    assert scaler.means["monetary"] == pytest.approx(0.5)  # mean of log1p: (0 + 1) / 2


def test_top_values_orders_by_frequency_then_value(events):
    assert fx.top_values(events, "category", 5) == ["A", "B"]  # A: 2 events, B: 2, tie → A
    assert fx.top_values(events, "event_type", 1) == ["purchase"]  # 2 each, tie → by name


def test_level_names_are_column_safe():
    assert fx.level_name("Home & Garden") == "home_garden"
    assert fx.level_name("  ") == "blank"


def windows_group(events, as_of, windows=(7, 30)):
    return fx.window_shares(fx.window_sums(events, as_of, list(windows), ["purchase"]),
                            list(windows))


def test_activity_windows_and_trend(events):
    rows = by_user(windows_group(events, AS_OF))
    u1, u2 = rows["u1"], rows["u2"]
    # u1's events are 8.67, 8.65 and 5.17 days before as_of; u2's one event 1 day before.
    # u1: 1 of 3 events, 1 of 2 purchases and 10 of 40 spent in the last 7 days.
    assert (u1["w7_event_share"], u1["w7_purchase_share"], u1["w7_spend_share"]) == \
        pytest.approx((1 / 3, 1 / 2, 1 / 4))
    assert (u1["w30_event_share"], u1["w30_purchase_share"], u1["w30_spend_share"]) == (1, 1, 1)
    assert u1["trend"] == pytest.approx(math.log(2) - math.log(3))  # 1 recent vs 2 before
    # u2 bought nothing: no purchase or spend to share.
    assert (u2["w7_event_share"], u2["w7_purchase_share"], u2["w7_spend_share"]) == (1, 0, 0)
    assert u2["trend"] == pytest.approx(math.log(2))


def aggregates_at(events, as_of, windows=(7, 30)):
    """The behaviour and windows groups with the window sums, as silver/user_aggregates
    keeps them."""
    sums = fx.window_sums(events, as_of, list(windows), ["purchase"])
    return (fx.behaviour(events, as_of, ["purchase"])
            .join(fx.window_shares(sums, list(windows)), "user_id")
            .join(fx.kept_window_sums(sums), "user_id"))


def flat(row: dict) -> dict:
    """A row with its window sums struct spread into ``sums.<name>`` keys."""
    out = {k: v for k, v in row.items() if k != fx.WINDOW_SUMS}
    return out | {f"sums.{k}": v for k, v in row[fx.WINDOW_SUMS].asDict().items()}


def test_aged_aggregates_are_those_of_a_later_as_of_without_new_events(events):
    """Three days later, with no new event: recency and tenure grow by 3; u1's events
    (11.67, 11.65 and 8.17 days back) leave the 7-day window, u2's (4 days back) stays."""
    later = datetime(2025, 1, 13)
    aggregates = aggregates_at(events, AS_OF)
    aged = fx.aged_windows(fx.aged(aggregates, 3.0), events, AS_OF, later, [7, 30],
                           ["purchase"])
    assert aged.columns == aggregates.columns
    rows = by_user(aged)
    u1, u2 = rows["u1"], rows["u2"]
    assert u1["recency_days"] == pytest.approx(8 + 4 / 24)
    assert u1["tenure_days"] == pytest.approx(11 + 16 / 24)
    assert (u1["n_events"], u1["monetary"]) == (3, 40.0)
    assert (u1["w7_event_share"], u1["w7_purchase_share"], u1["w7_spend_share"]) == (0, 0, 0)
    assert (u1["w30_event_share"], u1["w30_purchase_share"], u1["w30_spend_share"]) == (1, 1, 1)
    assert u1["trend"] == pytest.approx(-math.log(4))  # none recent, 3 in the week before
    # The 5.17-day-old event (10 spent) moved out of the last week into the week before.
    sums = u1[fx.WINDOW_SUMS]
    assert (sums["w7_events"], sums["w7_spend"], sums["recent"], sums["before"]) == (0, 0, 0, 3)
    assert (u2["w7_event_share"], u2["w7_purchase_share"], u2["trend"]) == \
        (1, 0, pytest.approx(math.log(2)))
    rebuilt = by_user(aggregates_at(events, later))
    for user, row in rows.items():
        assert flat(row) == pytest.approx(flat(rebuilt[user]))


@pytest.mark.parametrize("days", [0.5, 10, 40])
def test_window_sums_moved_forward_equal_those_rebuilt_later(events, days):
    """Half a day, more than the trend's spans (u2's event leaves the last week and the week
    before it at once) and more than every window (all shares 0): moving the sums forward
    gives what building them at the later time gives."""
    later = AS_OF + timedelta(days=days)
    aged = by_user(fx.aged_windows(fx.aged(aggregates_at(events, AS_OF), days), events,
                                   AS_OF, later, [7, 30], ["purchase"]))
    rebuilt = by_user(aggregates_at(events, later))
    assert set(aged) == set(rebuilt)
    for user, row in aged.items():
        assert flat(row) == pytest.approx(flat(rebuilt[user]))
    if days == 40:
        assert all(row["w30_event_share"] == 0 and row["trend"] == 0 for row in aged.values())


def test_diversity(spark):
    df = spark.createDataFrame([
        ("u1", datetime(2025, 1, 1, 8, 0), "a", "A", "s1"),
        ("u1", datetime(2025, 1, 1, 9, 0), "a", "A", "s1"),
        ("u1", datetime(2025, 1, 4, 20, 0), "b", "B", "s2"),
        ("u2", datetime(2025, 1, 9, 0, 0), "c", "B", "s3"),
    ], "user_id string, event_time timestamp, item_id string, category string, "
       "session_id string")
    rows = by_user(fx.diversity(df))
    assert rows["u1"]["n_items"] == 2 and rows["u1"]["events_per_session"] == 1.5
    assert rows["u1"]["category_entropy"] == pytest.approx(
        -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)))
    assert rows["u1"]["mean_gap_days"] == pytest.approx(3.5)  # Jan 1 08:00 → Jan 4 20:00
    assert rows["u2"] == {"user_id": "u2", "n_items": 1.0, "events_per_session": 1.0,
                          "mean_gap_days": 0.0, "category_entropy": 0.0}


def test_text_vectors(spark):
    content = spark.createDataFrame([
        ("u1", "cheap deal great discount"), ("u2", "cheap deal great discount"),
        ("u3", "premium quality luxury finish"), ("u3", "premium quality"), ("u4", None),
    ], "user_id string, text string")
    rows = by_user(fx.text_vectors(content, fx.text_model(content, size=4, seed=1, min_count=1)))
    assert set(rows) == {"u1", "u2", "u3"}  # no text, no row
    vector = lambda u: [rows[u][f"text_{i}"] for i in range(4)]
    assert vector("u1") == pytest.approx(vector("u2"))
    assert vector("u1") != pytest.approx(vector("u3"))


def test_sequences_keep_the_last_events_in_order_left_padded(events):
    layout = fx.SequenceLayout(steps=2, event_types=("view", "purchase"), categories=("A",))
    assert (layout.step_size, layout.size) == (5, 10)
    rows = by_user(fx.sequences(events, layout))
    scale = math.log1p(365 * 86400)
    # u1's last two events: purchase A 30 min after the view, then purchase B 3 d 11.5 h later.
    assert rows["u1"]["sequence"] == pytest.approx(
        [1, 0, 1, 1, math.log1p(1800) / scale, 1, 0, 1, 0, math.log1p(300600) / scale],
        rel=1e-6)
    # u2's one event (nothing before it: gap 1) after one zero step of padding.
    assert rows["u2"]["sequence"] == [0, 0, 0, 0, 0, 1, 1, 0, 0, 1]


def test_sequence_weight_gives_the_sequence_unit_total_variance(spark):
    df = spark.createDataFrame([([1.0, 0.0],), ([0.0, 2.0],), (None,)], "sequence array<float>")
    # Element variances 0.25 and 1.0 (a user without a sequence left out).
    assert fx.sequence_weight(df) == pytest.approx(1 / math.sqrt(1.25))
    assert fx.sequence_weight(df.where("sequence IS NULL")) == 1.0
    appended = fx.with_sequence(
        spark.createDataFrame([([9.0], [1.0, 0.0]), ([8.0], None)],
                              "features array<float>, sequence array<float>"), 0.5, 2)
    assert appended.columns == ["features"]
    assert sorted(r["features"] for r in appended.collect()) == [[8.0, 0, 0], [9.0, 0.5, 0]]


@pytest.mark.parametrize("weights", [{"txt": 1.0}, {"text": -1}, {"text": True}, [1, 2]])
def test_invalid_group_weights_are_a_clear_error(weights):
    from types import SimpleNamespace

    from persona.config import Config
    from persona.errors import PersonaError
    from persona.stages.features import _group_weights

    with pytest.raises(PersonaError, match="features.group_weights must be a mapping of groups"):
        Config({"features": {"group_weights": weights}})
    ctx = SimpleNamespace(config=Config({}))
    ctx.config.set("features.group_weights", {"text": 0.5, "sequence": 2})
    # The groups not named keep their default weight.
    assert _group_weights(ctx) == {"text": 0.5, "sequence": 2.0, "outlook": 2.0}
    ctx.config.set("features.group_weights", {"outlook": 1})
    assert _group_weights(ctx) == {"outlook": 1.0}


def test_level_columns_never_collide_with_buckets_or_each_other():
    assert fx.level_columns("attr_plan", ["other", "missing", "Other", "gold"],
                            ("attr_plan_other", "attr_plan_missing")) == [
        "attr_plan_other_2", "attr_plan_missing_2", "attr_plan_other_3", "attr_plan_gold"]
    assert fx.level_columns("type", ["View", "view"]) == ["type_view", "type_view_2"]


def test_profile_levels_named_other_and_missing_keep_their_own_columns(spark):
    users = spark.createDataFrame(
        [("u1", "other"), ("u2", "missing"), ("u3", "gold"), ("u4", None)],
        "user_id string, plan string")
    rows = by_user(fx.profile_attributes(users, {"plan": ["other", "missing"]}, []))
    one_hot = {u: [r["attr_plan_other_2"], r["attr_plan_missing_2"], r["attr_plan_other"],
                   r["attr_plan_missing"]] for u, r in rows.items()}
    assert one_hot == {"u1": [1.0, 0.0, 0.0, 0.0],   # the level "other"
                       "u2": [0.0, 1.0, 0.0, 0.0],   # the level "missing"
                       "u3": [0.0, 0.0, 1.0, 0.0],   # a level not kept: the other bucket
                       "u4": [0.0, 0.0, 0.0, 1.0]}   # no value: the missing bucket


def test_feature_state_keeps_every_fitted_value_through_json():
    from persona.features.state import FeatureState

    models = fx.LinearModels(["a"], {"b": (0.1, [1.0 / 3.0])}, {"b": 0.25})
    state = FeatureState(
        version="v1", groups={"behaviour": ["a", "b"]}, levels={"event_type": ["view"]},
        profile_levels={"plan": ["pro"]}, profile_means={"age": 41.5},
        means={"b": 2.0 / 3.0}, imputation=models, outlook=None,
        scaler=fx.Scaler(["a", "b"], {"a": 0.1, "b": 1e-17}, {"a": 1.0, "b": 0.0},
                         {"a": 0.7071067811865476, "b": 0.5}),
        sequence={"steps": 2, "event_types": ["view"], "categories": [], "weight": 0.3})
    back = FeatureState.from_json(state.to_json())
    assert back == state  # floats survive exactly, models come back as their classes
    assert back.frozen and not FeatureState().frozen
