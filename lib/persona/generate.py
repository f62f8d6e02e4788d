"""Synthetic raw user data with planted segments, to measure how well the pipeline recovers them.

:func:`generate` writes users, events and content CSV files shaped like real raw inputs, and
``truth.csv`` with each user's planted segment. Segments differ in several behaviours at once
(activity, basket value, timing, categories, channels, reviews, and the order and pace of
events within a session) with enough per-user noise that no single column separates them. A small, exactly counted share of event rows is corrupted so
that the ingest stage has something to quarantine.

Every user also has an ``interest`` (:data:`INTERESTS`, drawn uniformly, independent of the
segment) that only shows in WHICH items they choose: each interest favours one item in
every :data:`INTEREST_PERIOD` of a category's items sorted by price, and
:data:`INTEREST_PULL` of a user's events move to the nearest item their interest favours, a
few price ranks away (:func:`_favourite`). Activity, categories, price levels and timing
stay the same across interests, so that only a model of the items chosen (the ``items``
feature group) can tell them apart.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from persona.errors import PersonaError

WINDOW_START = np.datetime64("2025-01-01", "D")
WINDOW_DAYS = 180
DAY = 86_400
FIRST_WEEKDAY = 2  # 2025-01-01 is a Wednesday; Monday is 0

EVENT_TYPES = ("view", "search", "add_to_cart", "purchase", "return")
VIEW, SEARCH, ADD_TO_CART, PURCHASE, RETURN = range(len(EVENT_TYPES))
CATEGORIES = ("electronics", "fashion", "home", "grocery", "books", "sports", "beauty", "toys")
CATEGORY_PRICE = (250.0, 40.0, 80.0, 8.0, 15.0, 50.0, 20.0, 25.0)  # median item price
ITEMS_PER_CATEGORY = 2_000
CHANNELS = ("web", "app", "store")
GENDERS = ("F", "M", "X")
PLANS = ("free", "plus", "pro")
INTERESTS = ("classic", "modern", "outdoor")
INTEREST_PERIOD = 30  # each interest favours one item in this many, by price rank
INTEREST_PULL = 0.2  # share of a user's events moved to an item their interest favours
INTEREST_MISSING = 0.05  # share of users whose interest is not known
COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "PL")
COUNTRY_WEIGHTS = (0.30, 0.15, 0.14, 0.11, 0.09, 0.08, 0.07, 0.06)

USER_COLUMNS = ["user_id", "signup_date", "age", "gender", "country", "plan", "interest"]
EVENT_COLUMNS = ["user_id", "event_time", "event_type", "item_id", "category", "quantity",
                 "amount", "session_id", "channel"]
CONTENT_COLUMNS = ["user_id", "event_time", "text", "rating"]
TRUTH_COLUMNS = ["user_id", "segment", "segment_name"]
TABLES = ("users", "events", "content")

MISSING_SHARE = 0.05
HOUR_NOISE = 0.15
MIN_GAP_SECONDS = 10.0  # between two events of a session
SCRIPT_SHARE = 0.8  # sessions that follow their segment's event order; the rest are shuffled
REVIEW_DELAY_DAYS = 1.5
BAD_TIMES = ("not-a-time", "2025-13-45 99:99:99", "31/12/2025 10:00:00")

SENTIMENT_PHRASES = (
    ("very disappointed overall", "would not recommend", "not worth it"),
    ("it is okay", "does the job", "nothing special here"),
    ("really love it", "very happy overall", "five stars deserved"),
)
GENERIC_PHRASES = ("arrived on time", "as described online", "easy to use",
                   "bought it again", "for my family", "a gift idea")


@dataclass(frozen=True)
class Segment:
    """The behaviour planted in one segment; weight tuples follow the module's value tuples."""

    name: str
    share: float
    age: tuple[float, float]  # mean, sd
    genders: tuple[float, ...]
    plans: tuple[float, ...]
    signup_days: float  # mean days from signup to the window start
    sessions: float  # mean sessions per user
    session_events: float  # mean events per session
    event_types: tuple[float, ...]
    categories: tuple[float, ...]
    price_rank: tuple[float, float]  # Beta(a, b) of an item's price rank within its category
    extra_quantity: float  # mean units beyond the first
    channels: tuple[float, ...]
    weekdays: tuple[float, ...]  # Monday..Sunday
    hour: tuple[float, float]  # session start hour: mean, sd
    last_day: tuple[float, float]  # range of the user's last active day in the window
    script: tuple[int, ...] | None  # order of event types within a session (rank per type)
    gap_seconds: float  # mean seconds between events of a session, beyond the minimum
    review_rate: float  # chance that a purchase or return gets a review
    rating: float  # mean rating
    phrases: tuple[str, ...]  # three-word phrases of its reviews


SEGMENTS = (
    Segment("bargain hunters", 0.25, (29, 8), (0.62, 0.34, 0.04), (0.75, 0.20, 0.05), 400,
            12, 4.0, (0.45, 0.25, 0.14, 0.13, 0.03),
            (0.06, 0.30, 0.08, 0.08, 0.05, 0.06, 0.30, 0.07), (1.0, 5.0), 1.0,
            (0.70, 0.25, 0.05), (1, 1, 1, 1, 1.1, 1.1, 1), (20.5, 2.0), (180, 180),
            (1, 0, 2, 3, 4), 60.0, 0.25, 3.2,
            ("great deal overall", "cheap but good", "worth the price", "nice discount applied",
             "bought on sale", "best price around")),
    Segment("big spenders", 0.10, (47, 10), (0.36, 0.61, 0.03), (0.25, 0.35, 0.40), 700,
            5, 3.0, (0.50, 0.15, 0.15, 0.17, 0.03),
            (0.42, 0.06, 0.30, 0.04, 0.05, 0.05, 0.05, 0.03), (5.0, 1.5), 0.1,
            (0.20, 0.70, 0.10), (1.3, 1.3, 1.3, 1.3, 1.2, 0.4, 0.3), (13.0, 2.5), (180, 180),
            (0, 1, 2, 3, 4), 180.0, 0.35, 4.5,
            ("premium build quality", "love the quality", "feels truly luxury",
             "top quality materials", "worth every penny", "excellent premium finish")),
    Segment("weekend browsers", 0.25, (34, 10), (0.46, 0.50, 0.04), (0.65, 0.28, 0.07), 500,
            9, 5.0, (0.72, 0.17, 0.06, 0.04, 0.01),
            (0.05, 0.06, 0.05, 0.04, 0.24, 0.28, 0.04, 0.24), (2.0, 2.0), 0.3,
            (0.20, 0.70, 0.10), (0.35, 0.35, 0.35, 0.35, 0.5, 2.2, 2.2), (15.0, 3.5),
            (180, 180), None, 240.0, 0.12, 3.7,
            ("fun for kids", "good weekend game", "nice for hiking", "great book choice",
             "kids loved it", "perfect for training")),
    Segment("loyal regulars", 0.25, (42, 12), (0.56, 0.41, 0.03), (0.35, 0.45, 0.20), 1000,
            14, 3.0, (0.35, 0.10, 0.22, 0.30, 0.03),
            (0.04, 0.05, 0.25, 0.45, 0.05, 0.05, 0.07, 0.04), (2.0, 2.0), 1.5,
            (0.45, 0.10, 0.45), (1, 1, 1, 1, 1, 1, 1), (8.5, 1.5), (180, 180),
            (2, 3, 1, 0, 4), 30.0, 0.45, 4.4,
            ("fresh as always", "my usual favourite", "always very reliable",
             "reliable weekly order", "favourite local shop", "always fresh produce")),
    Segment("lapsed customers", 0.15, (37, 12), (0.48, 0.48, 0.04), (0.70, 0.22, 0.08), 450,
            7, 3.5, (0.45, 0.15, 0.15, 0.15, 0.10),
            (0.15, 0.15, 0.14, 0.12, 0.10, 0.12, 0.12, 0.10), (2.0, 2.0), 0.4,
            (0.45, 0.45, 0.10), (1, 1, 1, 1, 1, 1, 1), (18.0, 4.0), (12, 38),
            (1, 2, 3, 4, 0), 120.0, 0.50, 1.8,
            ("delivery arrived late", "item came broken", "still awaiting refund",
             "asked for refund", "broken on arrival", "late and damaged")),
)
K = len(SEGMENTS)


def _param(field: str) -> np.ndarray:
    """One segment parameter as an array indexed by segment."""
    return np.array([getattr(s, field) for s in SEGMENTS], dtype=float)


def _weights(field: str) -> np.ndarray:
    """Per-segment weight rows of ``field``, normalised to probabilities."""
    table = _param(field)
    return table / table.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class Catalog:
    """Items per category, sorted by price: ids and prices in cents."""

    ids: np.ndarray  # (categories, items) of str
    cents: np.ndarray  # (categories, items) of int


def _catalog(rng: np.random.Generator) -> Catalog:
    """A catalog whose prices scatter log-normally around each category's median."""
    shape = (len(CATEGORIES), ITEMS_PER_CATEGORY)
    prices = np.array(CATEGORY_PRICE)[:, None] * rng.lognormal(0.0, 0.7, shape)
    cents = np.sort(np.maximum(np.round(prices * 100), 50).astype(np.int64), axis=1)
    numbers = _zero_padded(np.arange(ITEMS_PER_CATEGORY), 5)
    ids = np.array([[c[:3] + n for n in numbers] for c in CATEGORIES], dtype=object)
    return Catalog(ids, cents)


def _favourite(rank: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """The price rank nearest ``rank`` among the items ``interest`` favours: those whose rank
    is ``interest * INTEREST_PERIOD // len(INTERESTS)`` modulo :data:`INTEREST_PERIOD`."""
    offset = interest * INTEREST_PERIOD // len(INTERESTS)
    step = (offset - rank) % INTEREST_PERIOD
    moved = rank + np.where(step > INTEREST_PERIOD // 2, step - INTEREST_PERIOD, step)
    moved = np.where(moved < 0, moved + INTEREST_PERIOD, moved)
    return np.where(moved >= ITEMS_PER_CATEGORY, moved - INTEREST_PERIOD, moved)


def _interests(rng: np.random.Generator, interest: np.ndarray) -> np.ndarray:
    """Each user's interest as text, blank for :data:`INTEREST_MISSING` of them."""
    names = np.array(INTERESTS, dtype=object)[interest]
    return np.where(rng.random(len(interest)) < INTEREST_MISSING, "", names)


def _zero_padded(values: np.ndarray, width: int) -> np.ndarray:
    """Integers as zero-padded strings (object array)."""
    return np.char.zfill(values.astype(str), width).astype(object)


@cache
def _clock_texts() -> np.ndarray:
    """``HH:MM:SS`` for every second of a day."""
    seconds = np.arange(DAY)
    return (_zero_padded(seconds // 3600, 2) + ":" + _zero_padded(seconds // 60 % 60, 2) + ":"
            + _zero_padded(seconds % 60, 2))


def _timestamps(seconds: np.ndarray) -> np.ndarray:
    """Seconds since the window start as ``yyyy-MM-dd HH:mm:ss`` strings."""
    days = np.datetime_as_string(WINDOW_START + np.arange(WINDOW_DAYS), unit="D").astype(object)
    return (days + " ")[seconds // DAY] + _clock_texts()[seconds % DAY]


def _money(cents: np.ndarray) -> np.ndarray:
    """Cents as strings with two decimals."""
    return (cents // 100).astype(str).astype(object) + "." + _zero_padded(cents % 100, 2)


def _draw(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """One outcome per element of ``rows``, drawn from the probability row it points to."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    ladder = (cum + np.arange(len(probs))[:, None]).ravel()
    picks = np.searchsorted(ladder, rows + rng.random(len(rows)), side="right")
    return picks - rows * probs.shape[1]


def _dirichlet(rng: np.random.Generator, base: np.ndarray, concentration: float) -> np.ndarray:
    """Per-row probabilities scattered around the rows of ``base``."""
    draws = rng.gamma(base * concentration)
    return draws / draws.sum(axis=1, keepdims=True)


def _gamma_factor(rng: np.random.Generator, n: int, shape: float = 2.0) -> np.ndarray:
    """Per-user multipliers with mean 1, so that users of a segment vary in intensity."""
    return rng.gamma(shape, 1.0 / shape, n)


def _users(rng: np.random.Generator, ids: np.ndarray, segment: np.ndarray,
           interest: np.ndarray) -> pd.DataFrame:
    """Profiles loosely tied to segment, with some attributes missing for a few users;
    ``interest`` is the column of :func:`_interests`."""
    n = len(ids)
    mean, sd = _param("age").T
    age = np.clip(np.round(rng.normal(mean[segment], sd[segment])), 18, 85).astype(np.int64)
    days = 1 + np.minimum(rng.exponential(_param("signup_days")[segment]), 2_000).astype(int)
    attributes = {
        "gender": np.array(GENDERS, dtype=object)[_draw(rng, _weights("genders"), segment)],
        "country": np.array(COUNTRIES, dtype=object)[
            rng.choice(len(COUNTRIES), n, p=np.array(COUNTRY_WEIGHTS) / sum(COUNTRY_WEIGHTS))],
        "plan": np.array(PLANS, dtype=object)[_draw(rng, _weights("plans"), segment)],
    }
    blank = _blanks(rng, n, 1 + len(attributes))
    frame = pd.DataFrame({
        "user_id": ids,
        "signup_date": np.datetime_as_string(WINDOW_START - days, unit="D"),
        "age": pd.arrays.IntegerArray(age, blank[:, 0]),
    })
    for column, (name, values) in enumerate(attributes.items(), start=1):
        frame[name] = np.where(blank[:, column], "", values)
    frame["interest"] = interest
    return frame[USER_COLUMNS]


def _blanks(rng: np.random.Generator, n: int, columns: int) -> np.ndarray:
    """Which attributes are missing: for about 5% of users, one or more of them."""
    affected = rng.random(n) < MISSING_SHARE
    blank = affected[:, None] & (rng.random((n, columns)) < 0.3)
    blank[np.arange(n), rng.integers(columns, size=n)] |= affected
    return blank


def _active_days(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    """Each user's last active day (exclusive) in the window, at least a week in."""
    low, high = _param("last_day").T
    return np.floor(rng.uniform(low[segment], high[segment] + 1)).astype(np.int64).clip(
        7, WINDOW_DAYS)


def _session_days(rng: np.random.Generator, weekdays: np.ndarray, active: np.ndarray
                  ) -> np.ndarray:
    """A day before ``active`` with the given weekday, uniformly among those days."""
    first = (weekdays - FIRST_WEEKDAY) % 7
    count = -(-(active - first) // 7)
    return first + 7 * np.floor(rng.random(len(first)) * count).astype(np.int64)


def _start_hours(rng: np.random.Generator, segment: np.ndarray) -> np.ndarray:
    """Session start hours around each segment's habit, some anywhere in the day."""
    mean, sd = _param("hour").T
    hours = rng.normal(mean[segment], sd[segment]) % 24
    anywhere = rng.random(len(segment)) < HOUR_NOISE
    return np.where(anywhere, rng.uniform(0, 24, len(segment)), hours)


@dataclass
class Sessions:
    """Sessions of a chunk, sorted by user then start: owner, start second, number within
    the owner's sessions, channel."""

    user: np.ndarray
    start: np.ndarray
    number: np.ndarray
    channel: np.ndarray


def _sessions(rng: np.random.Generator, segment: np.ndarray, active: np.ndarray) -> Sessions:
    """At least one session per user, the count drawn around the user's own rate."""
    rate = _param("sessions")[segment] * _gamma_factor(rng, len(segment))
    per_user = 1 + rng.poisson(np.maximum(rate - 1, 0))
    user = np.repeat(np.arange(len(segment)), per_user)
    seg = segment[user]
    day = _session_days(rng, _draw(rng, _weights("weekdays"), seg), active[user])
    start = day * DAY + (_start_hours(rng, seg) * 3600).astype(np.int64)
    order = np.lexsort((start, user))
    first = np.repeat(np.cumsum(per_user) - per_user, per_user)
    return Sessions(user, start[order], np.arange(len(user)) - first,
                    _draw(rng, _weights("channels"), seg))


def _event_seconds(rng: np.random.Generator, sessions: Sessions, per_session: np.ndarray,
                   mean_gap: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Event times: each session's start plus gaps around the session's ``mean_gap``
    seconds, capped at ``end``."""
    session = np.repeat(np.arange(len(per_session)), per_session)
    gaps = MIN_GAP_SECONDS + rng.exponential(mean_gap[session])
    first = np.cumsum(per_session) - per_session
    gaps[first] = 0.0
    elapsed = np.cumsum(gaps)
    offset = (elapsed - np.repeat(elapsed[first], per_session)).astype(np.int64)
    return np.minimum(sessions.start[session] + offset, end[sessions.user[session]])


@cache
def _script_ranks() -> np.ndarray:
    """(segments, event types) rank of each type in its segment's session order; a segment
    without a script ranks every type 0 (no order)."""
    return np.array([s.script or (0,) * len(EVENT_TYPES) for s in SEGMENTS], dtype=float)


def _scripted(rng: np.random.Generator, kind: np.ndarray, session: np.ndarray,
              seg: np.ndarray) -> np.ndarray:
    """Reorder event types within each session (``session`` sorted, events in time order)
    by the segment's script, keeping every user's counts: in :data:`SCRIPT_SHARE` of the
    sessions ties are broken at random, in the others the whole session is shuffled."""
    scripted = rng.random(session[-1] + 1 if len(session) else 0) < SCRIPT_SHARE
    key = np.where(scripted[session], _script_ranks()[seg, kind], 0.0) + rng.random(len(kind))
    return kind[np.lexsort((key, session))]


@dataclass
class Events:
    """The events of a chunk: CSV columns, plus the numbers that content is derived from."""

    columns: dict[str, np.ndarray]
    user: np.ndarray
    seconds: np.ndarray
    kind: np.ndarray


def _events(rng: np.random.Generator, ids: np.ndarray, segment: np.ndarray,
            active: np.ndarray, catalog: Catalog, interest: np.ndarray,
            taste: np.random.Generator, chunk: int) -> Events:
    """Events in sessions, each with a type, item, quantity and amount typical of the user;
    ``taste`` moves some items to ones the user's ``interest`` favours (:func:`_favourite`)."""
    sessions = _sessions(rng, segment, active)
    per_session = 1 + rng.poisson(_param("session_events")[segment[sessions.user]] - 1)
    session = np.repeat(np.arange(len(per_session)), per_session)
    user = sessions.user[session]
    seg = segment[user]
    mean_gap = _param("gap_seconds")[segment[sessions.user]]
    seconds = _event_seconds(rng, sessions, per_session, mean_gap, active * DAY - 1)

    kind = _draw(rng, _dirichlet(rng, _weights("event_types")[segment], 30.0), user)
    kind = _scripted(rng, kind, session, seg)
    category = _draw(rng, _dirichlet(rng, _weights("categories")[segment], 15.0), user)
    a, b = _param("price_rank").T
    rank = np.minimum((rng.beta(a[seg], b[seg]) * ITEMS_PER_CATEGORY).astype(np.int64),
                      ITEMS_PER_CATEGORY - 1)
    pulled = taste.random(len(rank)) < INTEREST_PULL
    rank = np.where(pulled, _favourite(rank, interest[user]), rank)
    units = np.where(kind == RETURN, 1, 1 + rng.poisson(_param("extra_quantity")[seg]))
    paid = np.isin(kind, (PURCHASE, RETURN))
    amount = np.full(len(kind), "", dtype=object)
    amount[paid] = _money(catalog.cents[category[paid], rank[paid]] * units[paid])

    # Numbered by chunk and session: an id that embedded the user's would carry it past
    # pseudonyms.
    session_ids = f"s{chunk:04d}-" + _zero_padded(np.arange(len(sessions.user)), 8)
    columns = {
        "user_id": ids[user],
        "event_time": _timestamps(seconds),
        "event_type": np.array(EVENT_TYPES, dtype=object)[kind],
        "item_id": catalog.ids[category, rank],
        "category": np.array(CATEGORIES, dtype=object)[category],
        "quantity": pd.arrays.IntegerArray(units.astype(np.int64),
                                           ~np.isin(kind, (ADD_TO_CART, PURCHASE, RETURN))),
        "amount": amount,
        "session_id": session_ids[session],
        "channel": np.array(CHANNELS, dtype=object)[sessions.channel[session]],
    }
    return Events(columns, user, seconds, kind)


@cache
def _phrase_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Review phrases: opening ones by sentiment, per-segment topics, generic ones."""
    openers = np.array([[p.capitalize() for p in row] for row in SENTIMENT_PHRASES], dtype=object)
    topics = np.array([s.phrases for s in SEGMENTS], dtype=object)
    return openers, topics, np.array(GENERIC_PHRASES, dtype=object)


def _reviews(rng: np.random.Generator, segment: np.ndarray, rating: np.ndarray) -> np.ndarray:
    """Reviews of two to five three-word phrases: a sentiment matching the rating, then
    mostly the segment's own topics, sometimes another segment's or a generic phrase."""
    openers, topics, generic = _phrase_tables()
    n, slots = len(segment), 4
    sentiment = np.digitize(rating, (3, 4))
    text = openers[sentiment, rng.integers(openers.shape[1], size=n)]
    position = np.arange(slots)
    topic_segment = np.where(rng.random((n, slots)) < 0.8, segment[:, None],
                             rng.integers(K, size=(n, slots)))
    topic = topics[topic_segment, (rng.integers(topics.shape[1], size=(n, 1)) + position)
                   % topics.shape[1]]
    filler = generic[(rng.integers(len(generic), size=(n, 1)) + position) % len(generic)]
    body = np.where(rng.random((n, slots)) < 0.3, filler, topic)
    used = position < rng.integers(1, slots + 1, size=(n, 1))
    return text + np.where(used, ", " + body, "").sum(axis=1)


def _content(rng: np.random.Generator, ids: np.ndarray, segment: np.ndarray,
             active: np.ndarray, events: Events) -> pd.DataFrame:
    """Reviews of some purchases and returns, posted a little later, rated per segment."""
    n = len(segment)
    rate = np.minimum(_param("review_rate")[segment] * _gamma_factor(rng, n), 1.0)
    reviewed = np.isin(events.kind, (PURCHASE, RETURN)) & (
        rng.random(len(events.kind)) < rate[events.user])
    user = events.user[reviewed]
    delay = rng.exponential(REVIEW_DELAY_DAYS * DAY, len(user)).astype(np.int64)
    seconds = np.minimum(events.seconds[reviewed] + delay, active[user] * DAY - 1)
    order = np.lexsort((seconds, user))
    user, seconds = user[order], seconds[order]
    mood = _param("rating")[segment] + rng.normal(0.0, 0.4, n)
    rating = np.clip(np.round(rng.normal(mood[user], 0.8)), 1, 5).astype(np.int64)
    return pd.DataFrame({
        "user_id": ids[user],
        "event_time": _timestamps(seconds),
        "text": _reviews(rng, segment[user], rating),
        "rating": rating,
    }, columns=CONTENT_COLUMNS)


def _bad_total(fraction: float, events: int) -> int:
    """How many of the first ``events`` event rows are corrupted."""
    if fraction == 0 or events == 0:
        return 0
    return max(1, round(fraction * events))


def _corrupt(rng: np.random.Generator, events: Events, count: int, done: int) -> None:
    """Corrupt ``count`` distinct rows in place; the k-th bad row overall gets defect k % 3:
    empty user_id, unparseable event_time, non-numeric amount on a purchase row."""
    defect = (done + np.arange(count)) % 3
    purchases = np.flatnonzero(events.kind == PURCHASE)
    priced = rng.choice(purchases, min(np.count_nonzero(defect == 2), len(purchases)),
                        replace=False)
    shortfall = np.count_nonzero(defect == 2) - len(priced)
    defect = np.concatenate([defect[defect < 2], np.arange(shortfall) % 2])
    rest = rng.choice(np.setdiff1d(np.arange(len(events.kind)), priced), len(defect),
                      replace=False)
    columns = events.columns
    columns["user_id"][rest[defect == 0]] = ""
    timeless = rest[defect == 1]
    columns["event_time"][timeless] = np.array(BAD_TIMES, dtype=object)[
        np.arange(len(timeless)) % len(BAD_TIMES)]
    columns["amount"][priced] = [a.replace(".", ",") + "EUR" for a in columns["amount"][priced]]


def _write(frame: pd.DataFrame, path: Path, append: bool = False) -> None:
    """Plain CSV with a header, unless appending."""
    frame.to_csv(path, index=False, lineterminator="\n", mode="a" if append else "w",
                 header=not append)


def _prepare(root: Path) -> None:
    """Create the table folders and remove part files of an earlier run."""
    for table in TABLES:
        folder = root / table
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("part-*.csv"):
            old.unlink()


def generate(out: str, users: int = 1000, seed: int = 0, bad_fraction: float = 0.002,
             chunk_users: int = 50_000, log: Callable[[str], None] | None = None) -> dict:
    """Write a synthetic raw data set with five planted segments and a planted interest
    (see the module) under ``out``.

    Writes ``users/``, ``events/`` and ``content/`` as ``part-NNNNN.csv`` files (one per chunk
    of ``chunk_users`` users) and ``truth.csv`` (user_id, segment, segment_name). A share
    ``bad_fraction`` of event rows (at least one when positive) is corrupted. The same
    arguments give byte-identical files. Returns the row counts written:
    ``{"users", "events", "content", "bad_rows", "segments"}``.
    """
    if users < 1 or chunk_users < 1:
        raise PersonaError(f"generate: users ({users}) and chunk_users ({chunk_users}) "
                           f"must be at least 1")
    if not 0 <= bad_fraction <= 1:
        raise PersonaError(f"generate: bad_fraction must be between 0 and 1, got {bad_fraction}")
    root = Path(out)
    _prepare(root)
    chunks = -(-users // chunk_users)
    seeds = np.random.SeedSequence(seed).spawn(chunks + 1)
    catalog = _catalog(np.random.default_rng(seeds[0]))
    shares = _param("share") / _param("share").sum()
    names = np.array([s.name for s in SEGMENTS], dtype=object)
    counts = {"users": 0, "events": 0, "content": 0, "bad_rows": 0, "segments": K}
    for index in range(chunks):
        rng = np.random.default_rng(seeds[index + 1])
        numbers = np.arange(index * chunk_users, min(users, (index + 1) * chunk_users)) + 1
        segment = rng.choice(K, size=len(numbers), p=shares)
        active = _active_days(rng, segment)
        ids = "u" + _zero_padded(numbers, 7)
        # A stream of its own: only the items chosen (and their amounts) depend on interests.
        taste = np.random.default_rng(seeds[index + 1].spawn(1)[0])
        interest = taste.integers(len(INTERESTS), size=len(numbers))
        events = _events(rng, ids, segment, active, catalog, interest, taste, index)
        content = _content(rng, ids, segment, active, events)
        total = counts["events"] + len(events.kind)
        bad = _bad_total(bad_fraction, total) - _bad_total(bad_fraction, counts["events"])
        _corrupt(rng, events, bad, counts["bad_rows"])

        part = f"part-{index:05d}.csv"
        _write(_users(rng, ids, segment, _interests(taste, interest)), root / "users" / part)
        _write(pd.DataFrame(events.columns, columns=EVENT_COLUMNS), root / "events" / part)
        _write(content, root / "content" / part)
        truth = {"user_id": ids, "segment": segment, "segment_name": names[segment]}
        _write(pd.DataFrame(truth, columns=TRUTH_COLUMNS), root / "truth.csv", append=index > 0)
        counts["users"] += len(numbers)
        counts["events"] = total
        counts["content"] += len(content)
        counts["bad_rows"] += bad
        if log:
            log(f"generated chunk {index + 1}/{chunks}: {len(numbers)} users, "
                f"{len(events.kind):,} events")
    return counts
