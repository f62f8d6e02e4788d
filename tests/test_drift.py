"""Feature drift (PSI on quantile bins of the training data) and the retraining policy, on
tiny frames whose answers are worked out by hand."""
import math

import pytest

from persona.config.schema import Retrain
from persona.monitoring import drift
from persona.monitoring.policy import Measures, retrain_reasons

pytestmark = pytest.mark.unit


def _shares(df):
    return {(r["name"], r["bin"]): round(r["share"], 6) for r in df.collect()}


def test_values_fall_in_the_bins_of_the_edges_and_nulls_in_their_own(spark):
    df = spark.createDataFrame([(1.0,), (2.0,), (3.0,), (4.0,), (None,)], "x double")
    # (-inf, 2] holds 1 and 2, (2, inf) holds 3 and 4, the null its own bin: 2/5, 2/5, 1/5
    assert _shares(drift.bin_shares(df, {"x": [2.0]})) == {
        ("x", 0): 0.4, ("x", 1): 0.4, ("x", drift.NULL_BIN): 0.2}


def test_reference_keeps_each_bins_upper_edge(spark):
    df = spark.createDataFrame([(float(v), 1.0) for v in range(1, 11)], "x double, c double")
    ref = drift.reference(df, ["x", "c"], bins=2)
    rows = {(r["name"], r["bin"]): (r["upper_edge"], r["share"]) for r in ref.collect()}
    # the median of 1..10 is 5: five values up to it, five above; a constant has one bin
    assert rows == {("x", 0): (5.0, 0.5), ("x", 1): (None, 0.5), ("c", 0): (1.0, 1.0)}
    assert drift.reference_edges(ref) == {"x": [5.0], "c": [1.0]}


def test_psi_of_shifted_shares(spark):
    ref = spark.createDataFrame([("x", 0, 0.5), ("x", 1, 0.5)], "name string, bin int, share double")
    cur = spark.createDataFrame([("x", 0, 0.25), ("x", 1, 0.75)],
                                "name string, bin int, share double")
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    (row,) = drift.psi(ref, cur).collect()
    assert row["psi"] == pytest.approx(expected) and expected == pytest.approx(0.274653, abs=1e-6)


def test_a_bin_empty_on_one_side_counts_with_the_floor(spark):
    ref = spark.createDataFrame([("x", 0, 1.0)], "name string, bin int, share double")
    cur = spark.createDataFrame([("x", 0, 0.5), ("x", -1, 0.5)],
                                "name string, bin int, share double")
    f = drift.SHARE_FLOOR
    expected = (0.5 - 1.0) * math.log(0.5) + (0.5 - f) * math.log(0.5 / f)
    assert drift.psi(ref, cur).first()["psi"] == pytest.approx(expected)


def test_one_drifted_feature_in_six_is_below_the_default_share():
    # 1 of 6 features above PSI 0.25 is 0.17 of them, under the default 0.2; no age limit
    psi = {"a": 0.1, "b": 0.3, "c": 0.0, "d": 0.0, "e": 0.0, "f": 0.0}
    assert retrain_reasons(Measures(psi=psi, model_age_days=300), Retrain()) == []


def test_reasons_name_the_threshold_crossed():
    settings = Retrain(max_psi=0.25, max_drifted_share=0.4, max_age_days=30)
    reasons = retrain_reasons(Measures(psi={"a": 0.3, "b": 0.5, "c": 0.0}, model_age_days=31.2),
                              settings)
    assert reasons == [
        "2 of 3 features drifted (PSI > 0.25: a, b), more than retrain.max_drifted_share 0.4",
        "the models are 31 days old, more than retrain.max_age_days 30"]


def test_share_changes_and_the_segments_that_moved_too_far():
    # segment 2 vanished (0.3 -> 0), segment 3 is new, segment 1 moved 0.04: under 0.05
    changes = drift.share_changes({1: 0.7, 2: 0.3}, {1: 0.74, 3: 0.26})
    assert changes == pytest.approx({1: 0.04, 2: -0.3, 3: 0.26})
    assert retrain_reasons(Measures(share_change=changes), Retrain()) == [
        "the share of segment 2, 3 moved by more than retrain.max_share_change 0.05 (largest "
        "-0.300)"]
    assert retrain_reasons(Measures(share_change={1: 0.04}), Retrain()) == []


def test_hundreds_of_columns_bin_without_falling_back_to_interpreted_code(spark):
    columns = [f"f{i}" for i in range(400)]
    df = spark.createDataFrame([tuple(float(i * r) for i in range(400)) for r in range(30)],
                               ", ".join(f"{c} double" for c in columns))
    spark.conf.set("spark.sql.codegen.fallback", "false")
    try:
        ref = drift.reference(df, columns, bins=10)
        # f0 is constant (one bin); every other column has 30 distinct values (ten bins)
        assert ref.count() == 1 + 399 * 10
    finally:
        spark.conf.unset("spark.sql.codegen.fallback")
