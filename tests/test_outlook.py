"""The outlook group: next-period outcomes, the fit on an earlier cut, its predictions."""
import math
from datetime import datetime, timedelta

import pytest

from persona.features import outlook

pytestmark = pytest.mark.unit

START = datetime(2025, 1, 10)


def day(n: float) -> datetime:
    return datetime(2025, 1, 1) + timedelta(days=n)


def by_user(df):
    return {r["user_id"]: r for r in df.collect()}


def test_next_period_counts_purchases_after_the_start_within_the_days(spark):
    # start = day 9 (10 Jan), 5 days: the period is (10 Jan, 15 Jan].
    events = spark.createDataFrame([
        ("u1", day(1), "purchase", 10.0), ("u1", day(11), "purchase", 20.0),  # spends 20
        ("u2", day(2), "view", None), ("u2", day(20), "purchase", 9.0),        # after the end
        ("u3", day(11), "purchase", 5.0),                                       # new: not in
        ("u4", day(5), "purchase", 7.0), ("u4", day(11), "cancel", 7.0),       # no purchase
        ("u5", day(3), "purchase", 3.0), ("u5", day(13), "purchase", -5.0),    # a refund
    ], "user_id string, event_time timestamp, event_type string, amount double")
    rows = by_user(outlook.next_period(events, START, 5, ["purchase"]))
    assert sorted(rows) == ["u1", "u2", "u4", "u5"]
    assert rows["u1"]["outlook_log_spend"] == pytest.approx(math.log(21.0))
    assert rows["u1"]["outlook_active"] == 1.0
    assert (rows["u2"]["outlook_log_spend"], rows["u2"]["outlook_active"]) == (0.0, 0.0)
    assert (rows["u4"]["outlook_log_spend"], rows["u4"]["outlook_active"]) == (0.0, 0.0)
    # It bought (active), but its spend in the period is negative: no spend.
    assert (rows["u5"]["outlook_log_spend"], rows["u5"]["outlook_active"]) == (0.0, 1.0)


def test_fit_then_predict_recovers_a_linear_outlook_and_keeps_it_in_range(spark):
    # log spend = 1 + 2x, chance of buying = x / 2, exactly: the fit recovers both.
    xs = [0.0, 0.5, 1.0, 1.5, 2.0]
    history = spark.createDataFrame([(f"u{i}", x) for i, x in enumerate(xs)],
                                    "user_id string, x double")
    outcome = spark.createDataFrame([(f"u{i}", 1 + 2 * x, x / 2) for i, x in enumerate(xs)],
                                    "user_id string, outlook_log_spend double, "
                                    "outlook_active double")
    models = outlook.fit(history, outcome, ["x"])
    assert models.r2 == pytest.approx({"outlook_log_spend": 1.0, "outlook_active": 1.0},
                                      abs=1e-3)
    now = spark.createDataFrame([("a", 1.0), ("b", 3.0), ("c", -1.0)], "user_id string, x double")
    rows = by_user(outlook.predict(models, now))
    assert rows["a"]["outlook_log_spend"] == pytest.approx(3.0, abs=1e-2)   # 1 + 2
    assert rows["a"]["outlook_active"] == pytest.approx(0.5, abs=1e-2)      # 1 / 2
    assert rows["b"]["outlook_log_spend"] == pytest.approx(7.0, abs=2e-2)   # 1 + 6
    assert rows["b"]["outlook_active"] == 1.0                               # 1.5, capped
    assert rows["c"]["outlook_log_spend"] == 0.0                            # -1, floored
    assert rows["c"]["outlook_active"] == 0.0                               # -0.5, floored
