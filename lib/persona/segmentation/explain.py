"""Segment explanations: what distinguishes a segment, a short name, and readable rules.

Values are shown in the data's own units (shares as percentages, days, money, counts);
the standardised mean difference of a feature is ``(segment mean - population mean) /
population standard deviation``. The rules come from a shallow decision tree (Spark MLlib)
that predicts the segment from the original feature columns; its fidelity is the share of
held-out users it puts in the segment K-Means chose.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from pyspark.ml.classification import DecisionTreeClassifier
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from persona.splits import split_users, user_bucket

# prefix of a group of shares -> its readable label
SHARE_LABELS = {"type_": "{} share", "cat_": "{} share", "time_": "{} share",
                "channel_": "{} channel share"}
SHARE_PREFIXES = tuple(SHARE_LABELS)
# Groups whose columns have no meaning to read: learned text dimensions, sequence positions.
UNREADABLE_GROUPS = ("text", "sequence")
TEXT_DIMENSION = re.compile(r"text_\d+$")
DAYS = {"recency_days", "tenure_days", "mean_gap_days"}
MONEY = {"monetary", "avg_order_value"}
LABELS = {
    "recency_days": "days since last visit", "tenure_days": "days since first visit",
    "n_events": "events", "n_sessions": "sessions", "active_days": "active days",
    "n_purchases": "purchases", "monetary": "spend", "avg_order_value": "average order",
    "quantity": "units bought", "content_n": "reviews", "content_avg_rating": "average rating",
    "content_text_length": "review length", "time_weekend": "weekend share",
    "n_items": "distinct items", "events_per_session": "events per session",
    "mean_gap_days": "days between visits", "category_entropy": "category variety",
    "trend": "activity trend", "outlook_log_spend": "expected log spend next",
    "outlook_active": "chance of buying next",
}
WINDOW = re.compile(r"w(\d+)_(event|purchase|spend)_share$")  # trailing-window shares
# feature -> (family, phrase when above the population, phrase when below); a family
# appears once in a name.
PHRASES = {
    "monetary": ("spend", "high spend", "low spend"),
    "avg_order_value": ("spend", "big baskets", "small baskets"),
    "n_purchases": ("buying", "frequent buyers", "rare buyers"),
    "quantity": ("buying", "bulk buyers", None),
    "n_events": ("activity", "very active", "occasional"),
    "n_sessions": ("activity", "very active", "occasional"),
    "active_days": ("activity", "very active", "occasional"),
    "recency_days": ("recency", "lapsed", "recently active"),
    "tenure_days": ("tenure", "long-standing", "newcomers"),
    "time_weekend": ("week", "weekend", "weekday"),
    "content_avg_rating": ("mood", "happy reviewers", "unhappy reviewers"),
    "content_n": ("reviews", "reviewers", None),
    "content_text_length": ("reviews", "long reviews", None),
    "type_view": ("type", "browsers", None),
    "type_search": ("type", "searchers", None),
    "type_add_to_cart": ("type", "cart fillers", None),
    "type_purchase": ("type", "buyers", None),
    "type_return": ("returns", "returners", None),
    "attr_age": ("age", "older", "younger"),
    "n_items": ("range", "wide range", "narrow range"),
    "category_entropy": ("range", "varied tastes", "single-minded"),
    "events_per_session": ("sessions", "long sessions", "short sessions"),
    "mean_gap_days": ("rhythm", "infrequent visits", "frequent visits"),
    "trend": ("trend", "growing", "fading"),
    "outlook_active": ("outlook", "likely to buy", "unlikely to buy"),
    "outlook_log_spend": ("outlook", "high expected spend", "low expected spend"),
}
WINDOW_PHRASES = {"event": ("busy lately", "quiet lately"),
                  "purchase": ("buying lately", "not buying lately"),
                  "spend": ("spending lately", "not spending lately")}
MIN_Z = 0.25  # smallest standardised difference worth a word in a name


def feature_kind(column: str, numeric_attributes=()) -> str:
    """How a feature's values read: share, days, money, rating or number."""
    if column.startswith(SHARE_PREFIXES) or column.endswith("_missing") or WINDOW.match(column):
        return "share"
    if column.startswith("attr_"):
        return "number" if column[len("attr_"):] in numeric_attributes else "share"
    if column in DAYS:
        return "days"
    if column in MONEY:
        return "money"
    if column == "content_avg_rating":
        return "rating"
    return "number"


def feature_label(column: str) -> str:
    """A readable name: ``cat_home_decor`` → ``home decor share``."""
    if column in LABELS:
        return LABELS[column]
    window = WINDOW.match(column)
    if window:
        return f"share of {window.group(2)}s in the last {window.group(1)} days"
    for prefix, label in SHARE_LABELS.items():
        if column.startswith(prefix):
            return label.format(column[len(prefix):].replace("_", " "))
    if column.startswith("attr_"):
        return column[len("attr_"):].replace("_", " ")
    return column.replace("_", " ")


def format_value(column: str, value: float, numeric_attributes=()) -> str:
    """``value`` in the feature's own unit: ``61%``, ``12 days``, ``1,204``, ``4.2``."""
    kind = feature_kind(column, numeric_attributes)
    if kind == "share":
        return f"{value:.0%}"
    if kind == "days":
        return f"{value:.1f} days" if abs(value) < 10 else f"{value:,.0f} days"
    if kind == "money":
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    if kind == "rating":
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def standardised_differences(segment_means: dict, population: dict,
                             columns: list[str]) -> dict[str, float]:
    """``{feature: z}`` for one segment; constant features are left out.

    ``population`` holds ``mean_<feature>`` and ``std_<feature>`` (see
    :func:`persona.segmentation.profiles.feature_stats`).
    """
    out = {}
    for c in columns:
        std = population[f"std_{c}"] or 0.0
        if std > 1e-12:
            out[c] = (segment_means[c] - population[f"mean_{c}"]) / std
    return out


def readable_columns(columns: list[str], groups: dict[str, list[str]]) -> list[str]:
    """The ``columns`` a person can read: not in a group of :data:`UNREADABLE_GROUPS`
    (``groups``: the feature groups' columns, see
    :func:`persona.stages.features.feature_groups`) nor a learned text dimension."""
    hidden = {c for g in UNREADABLE_GROUPS for c in groups.get(g, [])}
    return [c for c in columns if c not in hidden and not TEXT_DIMENSION.match(c)]


def ranked(z: dict[str, float], top: int | None = None) -> list[str]:
    """Features by decreasing distance from the population; learned text dimensions
    (``text_<i>``), which have no meaning to read, are left out."""
    out = sorted((c for c in z if not TEXT_DIMENSION.match(c)), key=lambda c: (-abs(z[c]), c))
    return out[:top]


def describe(segment_means: dict, population: dict, z: dict[str, float], top: int = 3,
             numeric_attributes=()) -> tuple[list[dict], str]:
    """The ``top`` features furthest from the population (see :func:`ranked`) and a
    description in the data's units: ``"high spend (812 vs 230), low weekend share (10% vs
    30%)"``."""
    fmt = lambda c, v: format_value(c, v, numeric_attributes)
    top_features = [
        {"feature": c, "segment_mean": float(segment_means[c]),
         "population_mean": float(population[f"mean_{c}"]), "z": float(z[c])}
        for c in ranked(z, top)]
    description = ", ".join(
        f"{'high' if f['z'] > 0 else 'low'} {feature_label(f['feature'])} "
        f"({fmt(f['feature'], f['segment_mean'])} vs {fmt(f['feature'], f['population_mean'])})"
        for f in top_features)
    return top_features, description


def highlights(segment_means: dict, population: dict, z: dict[str, float], top: int = 5,
               numeric_attributes=()) -> list[str]:
    """The ``top`` features furthest from the population (see :func:`ranked`), as
    readable lines: ``"weekend share 61% vs 29% overall (+1.8 sd)"``."""
    fmt = lambda c, v: format_value(c, v, numeric_attributes)
    return [f"{feature_label(c)} {fmt(c, segment_means[c])} vs "
            f"{fmt(c, population[f'mean_{c}'])} overall ({z[c]:+.1f} sd)"
            for c in ranked(z, top)]


def phrase(column: str, z: float) -> tuple[str, str] | None:
    """``(family, words)`` describing a feature that is high (z > 0) or low in a segment."""
    if column in PHRASES:
        family, high, low = PHRASES[column]
        words = high if z > 0 else low
        return (family, words) if words else None
    window = WINDOW.match(column)
    if window:
        return "window", WINDOW_PHRASES[window.group(2)][0 if z > 0 else 1]
    if z <= 0 or column.endswith(("_missing", "_other")) or TEXT_DIMENSION.match(column):
        return None
    for prefix in SHARE_PREFIXES:
        if column.startswith(prefix):
            words = column[len(prefix):].replace("_", " ")
            return column, f"{words} channel" if prefix == "channel_" else words
    if column.startswith("attr_"):
        return column, column[len("attr_"):].replace("_", " ")
    return column, f"high {column.replace('_', ' ')}"


def name_phrases(z: dict[str, float], min_z: float = MIN_Z) -> list[str]:
    """Phrases of a segment's distinguishing features, strongest first, one per family."""
    seen, out = set(), []
    for c in sorted(z, key=lambda c: (-abs(z[c]), c)):
        if abs(z[c]) < min_z:
            break
        found = phrase(c, z[c])
        if found and found[0] not in seen and found[1] not in out:
            seen.add(found[0])
            out.append(found[1])
    return out


def segment_names(z_by_segment: dict[int, dict[str, float]], words: int = 3) -> dict[int, str]:
    """A short, distinct name per segment: ``"high spend, weekend, electronics"``.

    Segments whose first ``words`` phrases coincide get one more phrase each; if that
    does not tell them apart the segment number is added.
    """
    phrases = {s: name_phrases(z) for s, z in z_by_segment.items()}
    names = {s: ", ".join(p[:words]) or "typical users" for s, p in phrases.items()}
    for s in sorted(names):
        clash = [t for t in names if names[t] == names[s]]
        if len(clash) > 1:
            for t in clash:
                names[t] = ", ".join(phrases[t][:words + 1]) or "typical users"
    counts = {}
    for n in names.values():
        counts[n] = counts.get(n, 0) + 1
    return {s: f"{n} ({s})" if counts[n] > 1 else n for s, n in names.items()}


@dataclass
class Surrogate:
    """A shallow tree that predicts the segment from the original features."""

    tree: dict  # nested nodes, see :func:`tree_structure`
    fidelity: float  # share of held-out users the tree puts in their K-Means segment
    recall: dict[int, float]  # per segment: share of its held-out users the tree recovers
    holdout_users: int


def fit_surrogate(users: DataFrame, columns: list[str], depth: int = 3, seed: int = 7,
                  holdout: float = 0.2, min_users: int = 5,
                  max_users: int | None = None) -> Surrogate:
    """Fit a decision tree of at most ``depth`` levels on a split of the ``users`` (their
    ``user_id``, ``segment`` and feature ``columns``) and measure on the held-out users how
    often it agrees with the segment assignment. ``max_users``: the tree learns from a sample
    of about that many of the users not held out (fixed by their ids), when there are more."""
    data = VectorAssembler(inputCols=columns, outputCol="_x").transform(
        users.select("user_id", F.col("segment").cast("double").alias("_y"), *columns))
    train, test = split_users(data, holdout, seed)
    if max_users is not None:
        available = train.count()
        if available > max_users:
            train = train.where(user_bucket(seed + 1) < max_users / available)
    tree = DecisionTreeClassifier(featuresCol="_x", labelCol="_y", maxDepth=depth, seed=seed,
                                  minInstancesPerNode=min_users).fit(train)
    scored = tree.transform(test).groupBy("_y").agg(
        F.count(F.lit(1)).alias("n"), F.sum((F.col("prediction") == F.col("_y")).cast("long"))
        .alias("hit")).collect()
    total = sum(r["n"] for r in scored)
    hits = sum(r["hit"] for r in scored)
    return Surrogate(tree_structure(tree), hits / total if total else float("nan"),
                     {int(r["_y"]): r["hit"] / r["n"] for r in scored}, total)


def tree_structure(model) -> dict:
    """A fitted MLlib tree as nested dicts: internal nodes ``{feature, threshold, left,
    right, counts}`` (left is ``feature <= threshold``), leaves ``{prediction, counts}``;
    ``counts`` are the training users of each class at that node."""

    def walk(node) -> dict:
        counts = [float(v) for v in node.impurityStats().stats()]
        if node.getClass().getSimpleName() == "InternalNode":
            split = node.split()
            return {"feature": int(split.featureIndex()), "threshold": float(split.threshold()),
                    "left": walk(node.leftChild()), "right": walk(node.rightChild()),
                    "counts": counts}
        return {"prediction": int(node.prediction()), "counts": counts}

    return walk(model._java_obj.rootNode())


def _conditions(path: list[tuple[int, str, float]], columns: list[str],
                numeric_attributes) -> str:
    """``[(feature, "<=" | ">", threshold)]`` → one bound or range per feature, in units."""
    bounds: dict[int, list] = {}
    for feature, op, threshold in path:
        low, high = bounds.setdefault(feature, [None, None])
        if op == ">":
            bounds[feature][0] = threshold if low is None else max(low, threshold)
        else:
            bounds[feature][1] = threshold if high is None else min(high, threshold)
    parts = []
    for feature, (low, high) in bounds.items():
        c = columns[feature]
        fmt = lambda v: format_value(c, v, numeric_attributes)
        label = feature_label(c)
        if low is not None and high is not None:
            parts.append(f"{fmt(low)} < {label} ≤ {fmt(high)}")
        elif low is not None:
            parts.append(f"{label} > {fmt(low)}")
        else:
            parts.append(f"{label} ≤ {fmt(high)}")
    return " and ".join(parts) or "every user"


def segment_rules(tree: dict, columns: list[str], max_rules: int = 2,
                  numeric_attributes=()) -> dict[int, list[dict]]:
    """Per segment, the tree's leaves that predict it, largest first (at most ``max_rules``):
    ``{"rule", "users", "coverage", "precision"}``: coverage is the share of the segment's
    training users that the rule matches, precision the share of matched users in it."""
    sizes = tree["counts"]
    out: dict[int, list[dict]] = {}

    def walk(node: dict, path: list) -> None:
        if "prediction" in node:
            s, counts = node["prediction"], node["counts"]
            users = sum(counts)
            if users and s < len(sizes) and sizes[s]:
                out.setdefault(s, []).append({
                    "rule": _conditions(path, columns, numeric_attributes),
                    "users": int(round(users)),
                    "coverage": counts[s] / sizes[s], "precision": counts[s] / users})
            return
        walk(node["left"], path + [(node["feature"], "<=", node["threshold"])])
        walk(node["right"], path + [(node["feature"], ">", node["threshold"])])

    walk(tree, [])
    return {s: sorted(rules, key=lambda r: -r["coverage"])[:max_rules]
            for s, rules in out.items()}
