"""Predictive validity of segments: outcomes, RFM, RFM segments and η² on hand-made data
whose answers were worked out by hand; then `persona evaluate` with an outcome on a small
hand-built lake, and its two user errors."""
import math
from datetime import datetime

import pytest
import yaml
from pyspark.sql import functions as F

from persona.lake.tables import Lake
from persona.logs import get_logger
from persona.report.page import Page, render
from persona.runtime.context import StageContext, run_stage
from persona.segmentation import validity as v
from persona.stages import evaluate, report
from tests.conftest import make_config

CUTOFF = datetime(2024, 3, 1)
EVENTS_SCHEMA = ("user_id string, event_time string, event_type string, amount double, "
                 "session_id string")
# u1: an order of two lines (session s1) and a view before; 9 spent in the 10 days after.
# u2: a view only before; its purchase on 12 March is after the horizon (11 March).
# u3: two purchases without a session, one of session s3 without an amount and one at the
#     cut-off itself (still history); after, a refund recorded as a purchase (-4).
# u4: active only after the cut-off: not in the population.
EVENTS = [
    ("u1", "2024-02-19 23:50:00", "purchase", 30.0, "s1"),
    ("u1", "2024-02-20 00:00:00", "purchase", 10.0, "s1"),
    ("u1", "2024-02-25 00:00:00", "view", None, "s2"),
    ("u1", "2024-03-05 00:00:00", "purchase", 9.0, "s5"),
    ("u1", "2024-03-06 00:00:00", "view", None, "s6"),
    ("u2", "2024-02-29 12:00:00", "view", None, "s7"),
    ("u2", "2024-03-12 00:00:00", "purchase", 20.0, "s8"),
    ("u3", "2024-02-01 00:00:00", "purchase", 5.0, None),
    ("u3", "2024-02-10 00:00:00", "purchase", 5.0, None),
    ("u3", "2024-02-15 00:00:00", "purchase", None, "s3"),
    ("u3", "2024-03-01 00:00:00", "purchase", 100.0, "s4"),
    ("u3", "2024-03-02 00:00:00", "purchase", -4.0, "s9"),
    ("u4", "2024-03-03 00:00:00", "purchase", 50.0, "s10"),
]


def _events(spark, rows=EVENTS):
    return spark.createDataFrame(rows, EVENTS_SCHEMA).withColumn(
        "event_time", F.col("event_time").cast("timestamp"))


@pytest.mark.unit
def test_outcomes_by_hand(spark):
    out = {r["user_id"]: (r["log_spend"], r["churn"])
           for r in v.outcomes(_events(spark), CUTOFF, 10, ["purchase"]).collect()}
    # u1: ln(1 + 9), bought; u2: nothing in (1 March, 11 March]; u3: -4 counts 0, bought.
    assert out == {"u1": (pytest.approx(math.log(10.0)), 0.0), "u2": (0.0, 1.0),
                   "u3": (0.0, 0.0)}


@pytest.mark.unit
def test_rfm_by_hand(spark):
    out = {r["user_id"]: (r["recency_days"], r["frequency"], r["monetary"])
           for r in v.rfm(_events(spark), CUTOFF, ["purchase"]).collect()}
    # u1: last purchase 20 Feb → 1 March = 10 days (2024 is a leap year); one order s1;
    #     30 + 10.
    # u2: no purchase: recency of its last event (12 hours), frequency and monetary 0.
    # u3: last purchase at the cut-off; 2 purchases without a session + s3 + s4 = 4;
    #     5 + 5 + (none) + 100.
    assert out == {"u1": (10.0, 1.0, 40.0), "u2": (0.5, 0.0, 0.0), "u3": (0.0, 4.0, 110.0)}


@pytest.mark.unit
def test_rfm_map_names_every_score_pair_once():
    cells = [(r, f) for r in range(1, 6) for f in range(1, 6)]
    matches = {c: [name for name, (r0, r1), (f0, f1) in v.RFM_MAP
                   if r0 <= c[0] <= r1 and f0 <= c[1] <= f1] for c in cells}
    assert all(len(names) == 1 for names in matches.values())
    assert len({name for name, _, _ in v.RFM_MAP}) == 10

# 20 users. Sorted recency 1 1 5 5 5 5 10 10 10 10 20 20 20 20 40 40 40 40 80 80: the
# quintile edges (ranks 4, 8, 12, 16) are 5, 10, 20, 40, so R = 5 for recency <= 5, 4 for
# 10, 3 for 20, 2 for 40, 1 for 80. Sorted frequency 0 0 1 1 1 1 2 2 2 2 3 3 3 3 4 4 4 4
# 6 6: edges 1, 2, 3, 4, so F = 1 for 0 and 1, then 2, 3, 4, and 5 for 6.
RFM_USERS = [
    # user, recency, frequency, R, F, named segment
    ("u00", 1, 6, 5, 5, "Champions"),
    ("u01", 1, 0, 5, 1, "New customers"),
    ("u02", 5, 4, 5, 4, "Champions"),
    ("u03", 5, 2, 5, 2, "Potential loyalists"),
    ("u04", 5, 1, 5, 1, "New customers"),
    ("u05", 5, 3, 5, 3, "Potential loyalists"),
    ("u06", 10, 1, 4, 1, "Promising"),
    ("u07", 10, 4, 4, 4, "Loyal customers"),
    ("u08", 10, 2, 4, 2, "Potential loyalists"),
    ("u09", 10, 3, 4, 3, "Potential loyalists"),
    ("u10", 20, 3, 3, 3, "Need attention"),
    ("u11", 20, 1, 3, 1, "About to sleep"),
    ("u12", 20, 4, 3, 4, "Loyal customers"),
    ("u13", 20, 2, 3, 2, "About to sleep"),
    ("u14", 40, 6, 2, 5, "Can't lose them"),
    ("u15", 40, 0, 2, 1, "Hibernating"),
    ("u16", 40, 3, 2, 3, "At risk"),
    ("u17", 40, 4, 2, 4, "At risk"),
    ("u18", 80, 2, 1, 2, "Hibernating"),
    ("u19", 80, 1, 1, 1, "Hibernating"),
]


@pytest.mark.unit
def test_rfm_segments_by_hand(spark):
    df = spark.createDataFrame(
        [(u, float(r), float(f), 10.0 * f) for u, r, f, *_ in RFM_USERS],
        "user_id string, recency_days double, frequency double, monetary double")
    out = {r["user_id"]: (r["r_score"], r["f_score"], r["segment"])
           for r in v.rfm_segments(df).collect()}
    assert out == {u: (r, f, name) for u, _, _, r, f, name in RFM_USERS}


@pytest.mark.unit
def test_kmeans_rfm_separates_regulars_from_the_lapsed(spark):
    # Three recent, frequent, big spenders and three lapsed users who never bought: far
    # apart on every standardised log column, so two centres split them this way.
    rows = [("a1", 1.0, 10.0, 900.0), ("a2", 2.0, 12.0, 1100.0), ("a3", 1.5, 9.0, 1000.0),
            ("b1", 200.0, 0.0, 0.0), ("b2", 250.0, 0.0, 0.0), ("b3", 180.0, 1.0, 5.0)]
    df = spark.createDataFrame(
        rows, "user_id string, recency_days double, frequency double, monetary double")
    out = {r["user_id"]: r["segment"] for r in v.kmeans_rfm(df, 2, 7, 20).collect()}
    groups = {frozenset(u for u in out if out[u] == s) for s in set(out.values())}
    assert groups == {frozenset({"a1", "a2", "a3"}), frozenset({"b1", "b2", "b3"})}


@pytest.mark.unit
def test_eta_squared_by_hand(spark):
    schema = "g string, x double"
    # Mean 4; SS_total = 9 + 1 + 1 + 9 = 20; SS_between = 2 (2 - 4)^2 + 2 (6 - 4)^2 = 16.
    # The row without a group is left out.
    df = spark.createDataFrame([("A", 1.0), ("A", 3.0), ("B", 5.0), ("B", 7.0),
                                (None, 100.0)], schema)
    assert v.eta_squared(df, "g", "x") == pytest.approx(0.8)
    # Churn-like 0/1: A = 1 1 0, B = 0 0 0. Mean 1/3; SS_total = 2 (2/3)^2 + 4 (1/3)^2 = 4/3;
    # SS_between = 3 (2/3 - 1/3)^2 + 3 (0 - 1/3)^2 = 2/3 → 0.5.
    binary = spark.createDataFrame([("A", 1.0), ("A", 1.0), ("A", 0.0), ("B", 0.0),
                                    ("B", 0.0), ("B", 0.0)], schema)
    assert v.eta_squared(binary, "g", "x") == pytest.approx(0.5)
    constant = spark.createDataFrame([("A", 2.0), ("B", 2.0)], schema)
    assert v.eta_squared(constant, "g", "x") == 0.0


@pytest.mark.unit
def test_evaluation_table_and_report_show_the_outcome():
    rows = [("persona", "outcome", "eta2_log_spend", 0.25),
            ("rfm_kmeans", "outcome", "eta2_churn", 0.5)]
    lines = evaluate._table(rows, ["persona", "rfm_kmeans"]).splitlines()
    assert lines[0].split() == ["method", "eta2", "log", "spend", "eta2", "churn"]
    assert lines[1].split() == ["persona", "0.2500", "-"]
    assert lines[2].split() == ["rfm_kmeans", "-", "0.5000"]
    images = {k: "data:image/png;base64," for k in ("sizes", "projection", "heatmap")}
    validity = [{"method": "Persona segments", "users": 1200.0, "segments": 5.0,
                 "horizon_days": 30.0, "eta2_log_spend": 0.8, "eta2_churn": 0.125}]
    html = render(Page("Persona", "sub", [], images, [], validity=validity))
    assert ("Predictive validity: share of next-30-day behaviour explained by the segments"
            in html)
    assert "<td>Persona segments</td><td>5</td><td>80.0%</td><td>12.5%</td>" in html
    assert "For the 1,200 segmented users" in html
    assert "Predictive validity" not in render(Page("Persona", "sub", [], images, []))


# --- persona evaluate with an outcome ---------------------------------------------------------

def _lake(spark, config, events):
    """Twelve users in two segments: u0..u5 (segment 0) buy 10 before the cut-off (1 March)
    and 20 in the 30 days after; u6..u11 (segment 1) only view, and u6 views once more on
    1 April, the last event."""
    lake = Lake(spark, config.path_of("lake.root"))
    users = [f"u{i}" for i in range(12)]
    point = lambda i: [0.0, 0.1 * i] if i < 6 else [5.0, 0.1 * i]
    lake.overwrite(spark.createDataFrame(
        [(u, point(i), "fs1") for i, u in enumerate(users)],
        "user_id string, features array<float>, feature_set_version string"),
        "silver/user_features")
    lake.overwrite(spark.createDataFrame(
        [(u, point(i), "enc1", "fs1") for i, u in enumerate(users)],
        "user_id string, embedding array<float>, model_version string, "
        "feature_set_version string"), "gold/user_embeddings")
    lake.overwrite(spark.createDataFrame(
        [(u, 0 if i < 6 else 1, "seg1", "enc1") for i, u in enumerate(users)],
        "user_id string, segment int, model_version string, encoder_version string"),
        "gold/user_segments")
    lake.overwrite(_events(spark, events), "bronze/events")
    return lake


STAGE_EVENTS = (
    [(f"u{i}", "2024-02-10 00:00:00", "purchase", 10.0, f"a{i}") for i in range(6)]
    + [(f"u{i}", "2024-03-10 00:00:00", "purchase", 20.0, f"b{i}") for i in range(6)]
    + [(f"u{i}", "2024-02-20 00:00:00", "view", None, f"c{i}") for i in range(6, 12)]
    + [("u6", "2024-04-01 00:00:00", "view", None, "d6")])


@pytest.mark.stage
def test_evaluate_measures_predictive_validity(spark, tmp_path):
    config = make_config(str(tmp_path), features={"as_of": "2024-03-01"}, evaluate={
        "baselines": False, "stability_runs": 0, "sample": 100,
        "outcome": {"horizon_days": 30}})
    lake = _lake(spark, config, STAGE_EVENTS)
    result = run_stage("evaluate", evaluate.run, config)
    rows = {(r["method"], r["metric"]): r["value"] for r in
            lake.read("gold/segment_quality").where(F.col("space") == "outcome").collect()}
    for method in ("persona", "rfm_segments", "rfm_kmeans"):
        for metric in ("eta2_log_spend", "eta2_churn"):
            assert 0.0 <= rows[(method, metric)] <= 1.0
        assert rows[(method, "users")] == 12 and rows[(method, "horizon_days")] == 30
        assert result[f"{method}.outcome.eta2_churn"] == rows[(method, "eta2_churn")]
    # Within each segment every user spends alike (ln 21 or 0) and churns alike (0 or 1):
    # all the variance lies between the two segments.
    assert rows[("persona", "eta2_log_spend")] == pytest.approx(1.0)
    assert rows[("persona", "eta2_churn")] == pytest.approx(1.0)
    assert rows[("persona", "segments")] == 2 and rows[("rfm_kmeans", "segments")] == 2
    # The report shows the rows of the current segment model only.
    ctx = StageContext(config, spark, lake, get_logger("report"))
    shown = report._validity(ctx, "seg1")
    assert [r["method"] for r in shown] == list(report.VALIDITY_NAMES.values())
    assert shown[0]["eta2_churn"] == rows[("persona", "eta2_churn")]
    assert report._validity(ctx, "another model") == []


def _cli_error(tmp_path, capsys, config) -> str:
    from persona.cli import main

    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    assert main(["evaluate", "--conf", str(conf)]) == 2
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()][-1]


@pytest.mark.stage
def test_evaluate_outcome_needs_a_cutoff(tmp_path, capsys):
    config = make_config(str(tmp_path), evaluate={"outcome": {"horizon_days": 30}})
    assert _cli_error(tmp_path, capsys, config) == (
        "persona: error: evaluate.outcome.horizon_days needs a cut-off: set features.as_of "
        "(or evaluate.outcome.cutoff) to a date before the end of the events, so that there "
        "is a future to predict")


@pytest.mark.stage
def test_evaluate_outcome_refuses_a_horizon_past_the_data(spark, tmp_path, capsys):
    config = make_config(str(tmp_path), evaluate={
        "outcome": {"horizon_days": 45, "cutoff": "2024-03-01"}})
    _lake(spark, config, STAGE_EVENTS)
    assert _cli_error(tmp_path, capsys, config) == (
        "persona: error: evaluate.outcome: cutoff 2024-03-01 00:00:00 "
        "(evaluate.outcome.cutoff) + 45 days ends after the last event in bronze/events "
        "(2024-04-01 00:00:00): the outcome would be cut short; set an earlier cutoff or a "
        "shorter evaluate.outcome.horizon_days")


@pytest.mark.stage
def test_evaluate_outcome_needs_the_events(tmp_path, capsys):
    config = make_config(str(tmp_path), features={"as_of": "2024-03-01"},
                         evaluate={"outcome": {"horizon_days": 30}})
    assert _cli_error(tmp_path, capsys, config) == (
        "persona: error: evaluate.outcome.horizon_days needs bronze/events: run "
        "`persona ingest` first")


@pytest.mark.stage
def test_evaluate_outcome_needs_segmented_users_before_the_cutoff(spark, tmp_path, capsys):
    # Every event of the lake is after 1 February: nobody is active at the cut-off.
    config = make_config(str(tmp_path), evaluate={
        "baselines": False, "stability_runs": 0, "sample": 100,
        "outcome": {"horizon_days": 30, "cutoff": "2024-02-01"}})
    _lake(spark, config, STAGE_EVENTS)
    assert _cli_error(tmp_path, capsys, config) == (
        "persona: error: evaluate.outcome: no segmented user has an event at or before the "
        "cutoff 2024-02-01 00:00:00: set a later cutoff")
