"""Tests of the synthetic data generator: files, determinism, bad rows, planted segments."""
from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score
from sklearn.preprocessing import StandardScaler

from persona.errors import PersonaError
from persona.generate import generate

pytestmark = pytest.mark.unit

COLUMNS = {
    "users": ["user_id", "signup_date", "age", "gender", "country", "plan", "interest"],
    "events": ["user_id", "event_time", "event_type", "item_id", "category", "quantity",
               "amount", "session_id", "channel"],
    "content": ["user_id", "event_time", "text", "rating"],
}
CATEGORIES = {"electronics", "fashion", "home", "grocery", "books", "sports", "beauty", "toys"}
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
SHARES = {"bargain hunters": 0.25, "big spenders": 0.10, "weekend browsers": 0.25,
          "loyal regulars": 0.25, "lapsed customers": 0.15}


def read(out: Path, table: str) -> pd.DataFrame:
    """All part files of a table, every value as text (empty when missing)."""
    parts = sorted((out / table).glob("part-*.csv"))
    return pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in parts],
                     ignore_index=True)


def defects(events: pd.DataFrame) -> pd.DataFrame:
    """Per event row: empty user_id, unparseable event_time, non-numeric amount."""
    time = pd.to_datetime(events.event_time, format=TIME_FORMAT, errors="coerce")
    amount = pd.to_numeric(events.amount, errors="coerce")
    return pd.DataFrame({
        "no_user": events.user_id == "",
        "bad_time": time.isna(),
        "bad_amount": (events.amount != "") & amount.isna(),
    })


def clean_events(out: Path) -> pd.DataFrame:
    """Valid event rows with parsed time and amount, joined with the planted segment."""
    events = read(out, "events")
    events = events[~defects(events).any(axis=1)].copy()
    events["time"] = pd.to_datetime(events.event_time, format=TIME_FORMAT)
    events["amount_text"] = events.amount
    events["amount"] = pd.to_numeric(events.amount)
    events["day"] = (events.time - pd.Timestamp("2025-01-01")).dt.days
    events["weekend"] = events.time.dt.dayofweek >= 5
    events["evening"] = events.time.dt.hour >= 18
    return events.merge(pd.read_csv(out / "truth.csv", dtype={"user_id": str}), on="user_id")


def file_bytes(out: Path) -> dict[str, bytes]:
    """Every CSV file under ``out`` by relative path."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*.csv"))}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, dict]:
    """1,000 users in one chunk, shared by the format tests."""
    out = tmp_path_factory.mktemp("gen") / "small"
    return out, generate(str(out), users=1000, seed=7)


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> tuple[Path, dict]:
    """5,000 users, enough for per-segment statistics."""
    out = tmp_path_factory.mktemp("gen") / "large"
    return out, generate(str(out), users=5000, seed=3)


def test_files_have_exactly_the_documented_columns(small):
    out, _ = small
    for table, columns in COLUMNS.items():
        with open(out / table / "part-00000.csv", newline="") as f:
            assert next(csv.reader(f)) == columns
    with open(out / "truth.csv", newline="") as f:
        assert next(csv.reader(f)) == ["user_id", "segment", "segment_name"]


def test_counts_match_the_files(small):
    out, counts = small
    users, truth = read(out, "users"), pd.read_csv(out / "truth.csv", dtype=str)
    assert counts["users"] == len(users) == len(truth) == 1000
    assert users.user_id.is_unique and set(users.user_id) == set(truth.user_id)
    assert users.user_id.str.fullmatch(r"u\d{7}").all()
    assert counts["events"] == len(read(out, "events"))
    assert counts["content"] == len(read(out, "content"))
    assert counts["segments"] == 5
    assert set(truth.segment.astype(int)) == set(range(5))
    assert truth.groupby("segment").segment_name.nunique().eq(1).all()
    assert 25 <= counts["events"] / counts["users"] <= 45


def test_values_are_well_formed(small):
    out, _ = small
    events = clean_events(out)
    assert set(events.event_type) == {"view", "search", "add_to_cart", "purchase", "return"}
    assert set(events.category) == CATEGORIES
    assert set(events.channel) == {"web", "app", "store"}
    assert events.time.min() >= pd.Timestamp("2025-01-01")
    assert events.time.max() <= pd.Timestamp("2025-06-30 23:59:59")
    counted = events.event_type.isin(["add_to_cart", "purchase", "return"])
    assert (events.quantity != "").eq(counted).all()
    assert events.quantity[counted].astype(int).ge(1).all()
    paid = events.event_type.isin(["purchase", "return"])
    assert events.amount_text.str.fullmatch(r"\d+\.\d\d").eq(paid).all()
    assert events.amount[paid].gt(0).all()

    sessions = events.groupby("session_id")
    assert sessions.user_id.nunique().eq(1).all()
    # a session id says nothing of whose it is (pseudonyms would not hide it otherwise)
    assert not any(u in s for s, u in zip(events.session_id, events.user_id))
    assert (sessions.time.max() - sessions.time.min()).max() < pd.Timedelta(hours=2)
    assert sessions.size().mean() > 2

    content = read(out, "content")
    posted = pd.to_datetime(content.event_time, format=TIME_FORMAT)
    assert posted.between("2025-01-01", "2025-06-30 23:59:59").all()
    assert set(content.user_id) <= set(events.user_id)
    assert content.rating.astype(int).between(1, 5).all()
    assert content.text.str.split().str.len().between(5, 15).all()

    users = read(out, "users")
    attributes = users[["age", "gender", "country", "plan"]]
    assert 0.02 <= attributes.eq("").any(axis=1).mean() <= 0.10
    assert set(users.gender) <= {"F", "M", "X", ""}
    assert set(users.plan) <= {"free", "plus", "pro", ""}
    countries = set(users.country) - {""}
    assert 6 <= len(countries) <= 10 and all(re.fullmatch("[A-Z]{2}", c) for c in countries)
    assert pd.to_datetime(users.signup_date, format="%Y-%m-%d").lt("2025-01-01").all()
    assert pd.to_numeric(users.age[users.age != ""]).between(18, 90).all()


def test_same_seed_gives_identical_files_and_another_seed_differs(small, tmp_path):
    out, counts = small
    again = tmp_path / "again"
    assert generate(str(again), users=1000, seed=7) == counts
    assert file_bytes(again) == file_bytes(out)
    assert generate(str(again), users=1000, seed=7) == counts
    assert file_bytes(again) == file_bytes(out)
    other = tmp_path / "other"
    generate(str(other), users=1000, seed=8)
    assert file_bytes(other).keys() == file_bytes(out).keys()
    for name in ("events/part-00000.csv", "content/part-00000.csv", "truth.csv"):
        assert file_bytes(other)[name] != file_bytes(out)[name]


def test_bad_rows_are_counted_exactly(small):
    out, counts = small
    with open(out / "events" / "part-00000.csv", newline="") as f:
        assert {len(row) for row in csv.reader(f)} == {len(COLUMNS["events"])}
    found = defects(read(out, "events"))
    assert found.sum(axis=1).max() == 1
    assert found.to_numpy().sum() == counts["bad_rows"] == round(0.002 * counts["events"])
    assert found.all(axis=0).sum() == 0 and found.any(axis=0).all()
    assert set(read(out, "events").event_type[found.bad_amount]) == {"purchase"}
    assert not pd.read_csv(out / "truth.csv", dtype=str).isna().any(axis=None)


@pytest.mark.parametrize("fraction, chunk", [(0.0, 1000), (0.05, 300), (1e-9, 1000)])
def test_bad_row_fraction(tmp_path, fraction, chunk):
    counts = generate(str(tmp_path), users=1000, bad_fraction=fraction, chunk_users=chunk)
    found = defects(read(tmp_path, "events")).to_numpy().sum()
    expected = 0 if fraction == 0 else max(1, round(fraction * counts["events"]))
    assert found == counts["bad_rows"] == expected


def test_planted_segments_differ_in_behaviour(large):
    out, _ = large
    truth = pd.read_csv(out / "truth.csv")
    shares = truth.segment_name.value_counts(normalize=True)
    for name, share in SHARES.items():
        assert abs(shares[name] - share) < 0.03, name

    events = clean_events(out)
    by_segment = events.groupby("segment_name")
    purchases = events[events.event_type == "purchase"].groupby("segment_name")
    spend = purchases.amount.mean()
    assert spend["big spenders"] > 4 * spend["bargain hunters"]
    per_user = purchases.size() / truth.segment_name.value_counts()
    assert per_user["loyal regulars"] > 2 * per_user["weekend browsers"]

    assert by_segment.day.max()["lapsed customers"] < 40
    assert by_segment.day.max().drop("lapsed customers").min() > 170
    views = events[events.event_type == "view"].groupby("segment_name").weekend.mean()
    assert views["weekend browsers"] > 0.55
    assert views.drop("weekend browsers").max() < 0.4
    evening = by_segment.evening.mean()
    assert evening.idxmax() == "bargain hunters"
    returns = by_segment.event_type.apply(lambda t: (t == "return").mean())
    assert returns.idxmax() == "lapsed customers"

    content = read(out, "content").merge(truth.astype({"user_id": str}), on="user_id")
    rating = content.assign(rating=content.rating.astype(int)).groupby("segment_name").rating
    assert rating.mean()["lapsed customers"] < 2.5
    assert min(rating.mean()["big spenders"], rating.mean()["loyal regulars"]) > 4
    lapsed_text = content.text[content.segment_name == "lapsed customers"]
    assert lapsed_text.str.contains("late|broken|refund").mean() > 0.5


def test_sessions_follow_each_segment_order_and_pace(large):
    out, _ = large
    events = clean_events(out).sort_values(["session_id", "time"], kind="stable")
    first = events.groupby("session_id").first()
    opens = pd.crosstab(first.segment_name, first.event_type, normalize="index")
    # Scripts: bargain hunters search first, loyal regulars buy first, lapsed customers
    # return first; weekend browsers' sessions are shuffled, so they open as their mix says.
    assert opens.idxmax(axis=1)["bargain hunters"] == "search"
    assert opens.idxmax(axis=1)["loyal regulars"] == "purchase"
    overall = events.groupby("segment_name").event_type.apply(lambda t: (t == "return").mean())
    assert opens["return"]["lapsed customers"] > 1.5 * overall["lapsed customers"]
    gaps = events.groupby("session_id").time.diff().dt.total_seconds()
    pace = gaps.groupby(events.segment_name).mean()
    assert pace["loyal regulars"] < pace["bargain hunters"] < pace["weekend browsers"]


def test_chunks_write_one_part_per_table_and_the_same_users(tmp_path):
    lines = []
    chunked = generate(str(tmp_path / "chunked"), users=3000, chunk_users=1000, log=lines.append)
    whole = generate(str(tmp_path / "whole"), users=3000)
    for table in COLUMNS:
        parts = sorted(p.name for p in (tmp_path / "chunked" / table).iterdir())
        assert parts == ["part-00000.csv", "part-00001.csv", "part-00002.csv"]
    truth = {name: pd.read_csv(tmp_path / name / "truth.csv", dtype=str)
             for name in ("chunked", "whole")}
    assert len(truth["chunked"]) == 3000 and truth["chunked"].user_id.is_unique
    assert set(truth["chunked"].user_id) == set(truth["whole"].user_id)
    assert chunked["users"] == whole["users"] == 3000
    assert len(lines) == 3 and lines[0].startswith("generated chunk 1/3: 1000 users, ")

    generate(str(tmp_path / "chunked"), users=3000)
    assert [p.name for p in (tmp_path / "chunked" / "events").iterdir()] == ["part-00000.csv"]


def user_features(events: pd.DataFrame, users: pd.Series) -> pd.DataFrame:
    """Simple per-user aggregates; users without any event of a kind get zeros."""
    per_user = events.groupby("user_id")
    bought = events[events.event_type == "purchase"].groupby("user_id")
    features = pd.DataFrame({
        "purchases": np.log1p(bought.size()),
        "mean_amount": np.log1p(bought.amount.mean()),
        "weekend_share": per_user.weekend.mean(),
        "evening_share": per_user.evening.mean(),
        "last_day": per_user.day.max(),
    }).join(pd.crosstab(events.user_id, events.category, normalize="index"))
    return features.reindex(users).fillna(0.0)


def test_segments_are_separable_by_kmeans_on_simple_aggregates(tmp_path):
    generate(str(tmp_path), users=2000, seed=11)
    events = clean_events(tmp_path)
    truth = pd.read_csv(tmp_path / "truth.csv", dtype={"user_id": str})
    features = StandardScaler().fit_transform(user_features(events, truth.user_id))
    labels = KMeans(n_clusters=5, n_init=10, random_state=0).fit_predict(features)
    assert adjusted_rand_score(truth.segment, labels) >= 0.8


@pytest.mark.parametrize("arguments", [{"users": 0}, {"chunk_users": 0},
                                       {"bad_fraction": -0.1}, {"bad_fraction": 1.5}])
def test_invalid_arguments_are_rejected(tmp_path, arguments):
    with pytest.raises(PersonaError):
        generate(str(tmp_path), **arguments)
