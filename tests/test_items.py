"""The items group: interaction counts and ALS user factors on hand-made events."""
from datetime import datetime

import numpy as np
import pytest

from persona.features.items import interaction_counts, item_columns, item_factors

pytestmark = pytest.mark.unit

AS_OF = datetime(2025, 2, 1)
BEFORE, AFTER = datetime(2025, 1, 10), datetime(2025, 3, 1)
# a1, a2 choose items x and y; b1, b2 choose p and q; n has no item; a1 buys p after as_of.
EVENTS = [("a1", "x", BEFORE), ("a1", "y", BEFORE), ("a1", "x", BEFORE),
          ("a2", "x", BEFORE), ("a2", "y", BEFORE),
          ("b1", "p", BEFORE), ("b1", "q", BEFORE),
          ("b2", "q", BEFORE), ("b2", "p", BEFORE), ("b2", "q", BEFORE),
          ("n", None, BEFORE)]
FUTURE = [("a1", "p", AFTER), ("a1", "p", AFTER)]
SCHEMA = "user_id string, item_id string, event_time timestamp"


def test_interactions_are_counted_up_to_as_of(spark):
    events = spark.createDataFrame(EVENTS + FUTURE, SCHEMA)
    counts = {(r["user_id"], r["item_id"]): r["interactions"]
              for r in interaction_counts(events, AS_OF).collect()}
    # a1 chose x twice and y once before as_of; its p after as_of and n's itemless event
    # are not counted.
    assert counts == {("a1", "x"): 2, ("a1", "y"): 1, ("a2", "x"): 1, ("a2", "y"): 1,
                      ("b1", "p"): 1, ("b1", "q"): 1, ("b2", "q"): 2, ("b2", "p"): 1}


def test_users_who_choose_the_same_items_get_near_factors(spark):
    """Two blocks of users and items that never meet: ALS gives the users of a block
    factors pointing the same way, and the two blocks near-orthogonal ones. Events after
    as_of change nothing, and the same seed gives the same factors."""
    now = item_factors(spark.createDataFrame(EVENTS, SCHEMA), AS_OF, 2, 7)
    assert now.columns == ["user_id", *item_columns(2)] == ["user_id", "item_0", "item_1"]
    rows = {r["user_id"]: np.array(r[1:]) for r in now.collect()}
    assert set(rows) == {"a1", "a2", "b1", "b2"}  # n chose no item
    cos = lambda u, v: rows[u] @ rows[v] / np.linalg.norm(rows[u]) / np.linalg.norm(rows[v])
    assert cos("a1", "a2") > 0.9 and cos("b1", "b2") > 0.9
    assert abs(cos("a1", "b1")) < 0.3
    later = item_factors(spark.createDataFrame(EVENTS + FUTURE, SCHEMA), AS_OF, 2, 7)
    assert {r["user_id"]: list(r[1:]) for r in later.collect()} == {
        u: list(v) for u, v in rows.items()}
