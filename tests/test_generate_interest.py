"""The planted interest of generated users: it decides which items they choose, and nothing
of their aggregate behaviour."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from persona.generate import (INTEREST_PERIOD, INTEREST_PULL, INTERESTS, _favourite,
                              generate)
from tests.test_generate import clean_events, read

pytestmark = pytest.mark.unit


def test_favourite_is_the_nearest_rank_the_interest_favours():
    # Period 30, three interests: interest 0 favours ranks 0, 30, 60, ...; 1 favours 10, 40,
    # ...; 2 favours 20, 50, ... (and 1970 is the last below 2,000 items).
    rank = np.array([5, 5, 5, 16, 44, 0, 1999, 1995])
    interest = np.array([0, 1, 2, 0, 2, 2, 2, 0])
    # 5 → 0, 10, 20 for interests 0, 1, 2 (20 is 15 above; 15 below is no rank); 16 → 30
    # (14 above, 16 below); 44 → 50; 0 → 20 (10 below is no rank); 1999 → 1970 (2000 is
    # past the last of 2,000 items); 1995 → 1980 (2010 is past it too).
    assert _favourite(rank, interest).tolist() == [0, 10, 20, 30, 50, 20, 1970, 1980]
    # Prices stay alike: a move is one of -14 .. +15 ranks (mean 0.5 over a period); only
    # within a period of either end of the 2,000 items, where the nearest favoured item is
    # beyond it, can it go up to a period (1999 → 1970 above).
    every = np.arange(2000)
    for i in range(len(INTERESTS)):
        shift = _favourite(every, np.full(2000, i)) - every
        assert np.abs(shift[30:-30]).max() <= 15 and np.abs(shift).max() < INTEREST_PERIOD
        assert abs(shift.mean()) < 1


@pytest.fixture(scope="module")
def chosen(tmp_path_factory) -> pd.DataFrame:
    """Valid events of 3,000 generated users with their interest and item's price rank."""
    out = tmp_path_factory.mktemp("gen") / "interest"
    generate(str(out), users=3000, seed=5, bad_fraction=0.0)
    users = read(out, "users")[["user_id", "interest"]]
    events = clean_events(out).merge(users[users.interest != ""], on="user_id")
    events["rank"] = events.item_id.str[3:].astype(int)
    return events


def test_interest_decides_the_items_chosen(chosen):
    # Favoured by interest i: rank ≡ 10 i (mod 30). Share of a user's events on items their
    # own interest favours: the pulled 0.2, plus 1/30 of the other 0.8 that land there by
    # chance → 0.227; on the items of another interest, only by chance: 0.8 / 30 → 0.027.
    offset = chosen.interest.map({v: i * INTEREST_PERIOD // len(INTERESTS)
                                  for i, v in enumerate(INTERESTS)})
    own = (chosen["rank"] % INTEREST_PERIOD == offset).groupby(chosen.interest).mean()
    other = (chosen["rank"] % INTEREST_PERIOD == (offset + 10) % 30).groupby(
        chosen.interest).mean()
    assert INTEREST_PULL == 0.2
    assert own.between(0.20, 0.25).all() and other.between(0.015, 0.04).all()


def test_aggregate_behaviour_is_the_same_for_every_interest(chosen):
    per_user = chosen.groupby(["interest", "user_id"]).agg(
        events=("event_type", "size"), spend=("amount", "sum"))
    means = per_user.groupby("interest").mean()
    assert (means.events / means.events.mean()).between(0.95, 1.05).all()
    assert (means.spend / means.spend.mean()).between(0.85, 1.15).all()
    categories = pd.crosstab(chosen.interest, chosen.category, normalize="index")
    assert (categories.max() - categories.min()).max() < 0.03
