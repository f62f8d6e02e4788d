"""Stable segment ids on hand-made data whose answers were worked out by hand: the matching
of a refit's labels to previous ids, new ids above every id ever made, the catalogue rows a
run changes, and the type-2 membership history with its flows and point-in-time look-up."""
from datetime import date, datetime

import numpy as np
import pytest

from persona.lake.tables import Lake
from persona.segmentation.identity import (HISTORY_TABLE, Overlap, catalogue_changes, flows,
                                           match_ids, moves, next_segment_id, open_stays,
                                           overlap, relabel, segment_on, stay_changes)

pytestmark = pytest.mark.unit

DAY1, DAY2, DAY3 = datetime(2026, 1, 1, 6), datetime(2026, 1, 2, 6), datetime(2026, 1, 3, 6)
CATALOGUE = ("id int, name string, size long, first_seen timestamp, last_seen timestamp, "
             "model_version string, retired boolean")


def test_matching_maximises_shared_users_one_to_one():
    """Greedy would give label 0 to old 0 (10 shared) and leave label 1 with nothing of old
    1; the best one-to-one matching swaps them: 9 + 9 = 18 shared users."""
    found = Overlap(old=[0, 1], new=[0, 1], shared=np.array([[10, 9], [9, 0]]),
                    old_sizes=np.array([19, 9]), new_sizes=np.array([19, 9]))
    assert match_ids(found, [0, 1], next_id=2, min_overlap=0.5) == {0: 1, 1: 0}


def test_a_label_without_a_real_match_gets_a_new_id_above_every_id_ever_made():
    """Old 0 (50 users) is label 1 now (40 shared), old 1 (32) is label 0 (30 shared); label
    2 (30 users) shares 5 with old 4 (60): 5 < 0.5 x min(60, 30), so no match: it gets 7,
    the next id after the largest ever made (6, say retired), not the free 4."""
    found = Overlap(old=[0, 1, 4], new=[0, 1, 2],
                    shared=np.array([[5, 40, 0], [30, 2, 0], [0, 0, 5]]),
                    old_sizes=np.array([50, 32, 60]), new_sizes=np.array([35, 42, 30]))
    assert match_ids(found, [0, 1, 2], next_id=7, min_overlap=0.5) == {0: 1, 1: 0, 2: 7}
    # With the floor at a sixth of the smaller segment, 5 of 30 is a real match.
    assert match_ids(found, [0, 1, 2], next_id=7, min_overlap=1 / 6)[2] == 4


def test_first_fit_keeps_the_order_of_the_fit():
    assert match_ids(None, [0, 1, 2], next_id=0, min_overlap=0.5) == {0: 0, 1: 1, 2: 2}


def test_overlap_counts_shared_users_and_each_side(spark):
    """a, b in old 3 → label 0; c in old 3 → label 1; d in old 5 left; e arrived in label 1."""
    previous = spark.createDataFrame([("a", 3), ("b", 3), ("c", 3), ("d", 5)],
                                     "user_id string, segment int")
    labels = spark.createDataFrame([("a", 0), ("b", 0), ("c", 1), ("e", 1)],
                                   "user_id string, label int")
    found = overlap(previous, labels)
    assert (found.old, found.new) == ([3, 5], [0, 1])
    assert found.shared.tolist() == [[2, 1], [0, 0]]
    assert found.old_sizes.tolist() == [3, 1] and found.new_sizes.tolist() == [2, 2]
    assert match_ids(found, [0, 1], next_segment_id(None, found), 0.5) == {0: 3, 1: 6}
    got = relabel(labels.withColumnRenamed("label", "segment"), {0: 3, 1: 6})
    assert sorted(tuple(r) for r in got.collect()) == [("a", 3), ("b", 3), ("c", 6), ("e", 6)]


def test_retired_ids_are_never_reused(spark):
    """The catalogue made ids 0..5, 5 retired; the users are in 0..4: the next id is 6."""
    catalogue = spark.createDataFrame(
        [(i, f"s{i}", 0 if i == 5 else 10, DAY1, DAY1, "m1", i == 5) for i in range(6)],
        CATALOGUE)
    previous = spark.createDataFrame([(f"u{i}", i) for i in range(5)],
                                     "user_id string, segment int")
    labels = previous.withColumnRenamed("segment", "label")
    assert next_segment_id(catalogue, overlap(previous, labels)) == 6
    assert next_segment_id(None, overlap(previous, labels)) == 5
    assert next_segment_id(None, None) == 0


def test_catalogue_rows_a_run_changes(spark):
    """0 unchanged (no row), 1 grew (kept name and first_seen), 2 no longer made (retired,
    size 0, last_seen kept), 3 retired before (no row), 4 new, 5 unchanged but named now
    (its profile was suppressed before)."""
    catalogue = spark.createDataFrame([
        (0, "weekend", 10, DAY1, DAY1, "m1", False), (1, "sports", 5, DAY1, DAY1, "m1", False),
        (2, "toys", 7, DAY1, DAY1, "m1", False), (3, "old", 0, DAY1, DAY1, "m0", True),
        (5, None, 4, DAY1, DAY1, "m1", False)],
        CATALOGUE)
    live = spark.createDataFrame([(0, 10, "renamed"), (1, 6, "other"), (4, 3, "new one"),
                                  (5, 4, "named")],
                                 "id int, size long, name string")
    rows = {r["id"]: r.asDict() for r in
            catalogue_changes(catalogue, live, "m1", DAY2).collect()}
    assert sorted(rows) == [1, 2, 4, 5]
    assert (rows[5]["name"], rows[5]["first_seen"]) == ("named", DAY1)
    assert rows[1] == {"id": 1, "name": "sports", "size": 6, "first_seen": DAY1,
                       "last_seen": DAY2, "model_version": "m1", "retired": False}
    assert rows[2] == {"id": 2, "name": "toys", "size": 0, "first_seen": DAY1,
                       "last_seen": DAY1, "model_version": "m1", "retired": True}
    assert rows[4] == {"id": 4, "name": "new one", "size": 3, "first_seen": DAY2,
                       "last_seen": DAY2, "model_version": "m1", "retired": False}


def _run(lake, spark, assignment, now):
    """One run's history MERGE, as the segment stage does it; returns the flows."""
    current = spark.createDataFrame(assignment, "user_id string, segment int")
    moved = moves(open_stays(lake), current)
    counts = {r["segment"]: (r["entered"], r["exited"], r["stayed"])
              for r in flows(moved).collect()}
    lake.upsert(stay_changes(moved, now), HISTORY_TABLE,
                "t.user_id = s.user_id AND t.valid_from = s.valid_from AND t.valid_to IS NULL")
    return counts


def test_history_closes_and_opens_stays(spark, tmp_path):
    """Day 1: a, b in 1. Day 2: a moves to 2, c arrives in 2. Day 3: b is gone."""
    lake = Lake(spark, str(tmp_path / "lake"))
    assert _run(lake, spark, [("a", 1), ("b", 1)], DAY1) == {1: (2, 0, 0)}
    assert _run(lake, spark, [("a", 2), ("b", 1), ("c", 2)], DAY2) == {
        1: (0, 1, 1), 2: (2, 0, 0)}
    version = lake.version(HISTORY_TABLE)
    assert _run(lake, spark, [("a", 2), ("b", 1), ("c", 2)], DAY2) == {
        1: (0, 0, 1), 2: (0, 0, 2)}
    assert lake.version(HISTORY_TABLE) == version  # unchanged: nothing written
    assert _run(lake, spark, [("a", 2), ("c", 2)], DAY3) == {1: (0, 1, 0), 2: (0, 0, 2)}

    rows = sorted(tuple(r) for r in lake.read(HISTORY_TABLE).collect())
    assert rows == [("a", 1, DAY1, DAY2), ("a", 2, DAY2, None), ("b", 1, DAY1, DAY3),
                    ("c", 2, DAY2, None)]
    on = {d: sorted(tuple(r) for r in segment_on(lake, ["a", "b", "c"], d).collect())
          for d in (date(2025, 12, 31), date(2026, 1, 1), date(2026, 1, 2),
                    date(2026, 1, 3))}
    assert on[date(2025, 12, 31)] == []
    assert on[date(2026, 1, 1)] == [("a", 1), ("b", 1)]
    assert on[date(2026, 1, 2)] == [("a", 2), ("b", 1), ("c", 2)]
    assert on[date(2026, 1, 3)] == [("a", 2), ("c", 2)]
    # An instant: a stay holds from valid_from up to, not including, valid_to.
    assert segment_on(lake, ["a"], DAY2).first()["segment"] == 2
    assert segment_on(lake, spark.createDataFrame([("a",)], "user_id string"),
                      datetime(2026, 1, 2, 5)).first()["segment"] == 1
