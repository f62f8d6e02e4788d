"""Per-user features from canonical events, users and content (pure DataFrame functions).

Every function returns one row per user keyed by ``user_id``; :func:`fuse` joins the
groups onto the users who have events, and :func:`scale` turns the columns into the
network's input vector.
"""
from __future__ import annotations

import datetime as dt
import itertools
import math
import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from pyspark.ml.functions import array_to_vector
from pyspark.ml.stat import Summarizer
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from persona.ingest.validation import BATCH
from persona.runtime.spark import column_cells

SECONDS_PER_DAY = 86400.0
# Hour-of-day buckets: name -> [start, end)
DAYPARTS = {"night": (0, 6), "morning": (6, 12), "afternoon": (12, 18), "evening": (18, 24)}
# Heavy-tailed columns get a signed log before standardisation.
LOG_COLUMNS = {"recency_days", "tenure_days", "n_events", "n_sessions", "active_days",
               "n_purchases", "monetary", "avg_order_value", "quantity", "content_n",
               "content_text_length", "n_items", "events_per_session", "mean_gap_days"}
# Levels rather than amounts: a user without reviews gets the population's mean, not 0
# (which would read as "rates everything 0" and split users by whether they write).
MEAN_IMPUTED = re.compile(r"^(content_avg_rating|content_text_length|text_\d+)$")
# How absent levels are filled (features.impute): predicted from the other columns, or the mean.
IMPUTE_METHODS = ("regression", "mean")


def level_name(value: str) -> str:
    """A column-safe, lower-case version of a category or attribute level."""
    return re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_") or "blank"


def level_columns(prefix: str, levels: list[str], taken: tuple[str, ...] = ()) -> list[str]:
    """``<prefix>_<level_name>`` for each level, unique: a name already ``taken`` (by a
    bucket such as ``<prefix>_other``) or given to an earlier level (``Pro`` and ``pro``)
    gets ``_2``, ``_3``, ... appended."""
    used, names = set(taken), []
    for level in levels:
        name = base = f"{prefix}_{level_name(level)}"
        suffix = 1
        while name in used:
            suffix += 1
            name = f"{base}_{suffix}"
        used.add(name)
        names.append(name)
    return names


def top_values(df: DataFrame, column: str, n: int) -> list[str]:
    """The ``n`` most frequent non-null values of ``column`` (ties by value)."""
    rows = (df.where(F.col(column).isNotNull()).groupBy(column).count()
            .orderBy(F.desc("count"), F.asc(column)).limit(n).collect())
    return [r[column] for r in rows]


def _share(condition: Column, total: Column) -> Column:
    return F.sum(F.when(condition, 1).otherwise(0)) / total


def behaviour(events: DataFrame, as_of, purchase_types: list[str]) -> DataFrame:
    """Recency, frequency, monetary value and activity of each user up to ``as_of``."""
    is_purchase = F.col("event_type").isin(purchase_types)
    agg = events.groupBy("user_id").agg(
        F.count(F.lit(1)).alias("n_events"),
        F.countDistinct("session_id").alias("n_sessions"),
        F.countDistinct(F.to_date("event_time")).alias("active_days"),
        F.max("event_time").alias("_last"),
        F.min("event_time").alias("_first"),
        F.sum(F.when(is_purchase, 1).otherwise(0)).alias("n_purchases"),
        F.coalesce(F.sum(F.when(is_purchase, F.col("amount"))), F.lit(0.0)).alias("monetary"),
        F.coalesce(F.sum(F.when(is_purchase, F.col("quantity"))), F.lit(0.0)).alias("quantity"),
    )
    return agg.select(
        "user_id",
        _age(as_of, "_last").alias("recency_days"),
        _age(as_of, "_first").alias("tenure_days"),
        F.col("n_events").cast("double"),
        F.col("n_sessions").cast("double"),
        F.col("active_days").cast("double"),
        F.col("n_purchases").cast("double"),
        F.col("monetary").cast("double"),
        F.when(F.col("n_purchases") > 0, F.col("monetary") / F.col("n_purchases"))
        .otherwise(0.0).alias("avg_order_value"),
        F.col("quantity").cast("double"),
    )


def _level_shares(events: DataFrame, column: str, levels: list[str], prefix: str) -> DataFrame:
    """Share of each user's events with a ``column`` value that have each of ``levels``."""
    total = F.count(F.lit(1))
    return events.where(F.col(column).isNotNull()).groupBy("user_id").agg(*[
        _share(F.col(column) == v, total).alias(name)
        for v, name in zip(levels, level_columns(prefix, levels))])


def event_mix(events: DataFrame, event_types: list[str]) -> DataFrame:
    """Share of each user's events of each type."""
    return _level_shares(events, "event_type", event_types, "type")


def category_affinity(events: DataFrame, categories: list[str]) -> DataFrame:
    """Share of each user's categorised events in each of the top categories."""
    return _level_shares(events, "category", categories, "cat")


def channel_mix(events: DataFrame, channels: list[str]) -> DataFrame:
    """Share of each user's events (with a channel) on each of the top channels."""
    return _level_shares(events, "channel", channels, "channel")


def time_profile(events: DataFrame) -> DataFrame:
    """Share of each user's events per part of the day, and on weekends."""
    hour = F.hour("event_time")
    total = F.count(F.lit(1))
    weekend = F.dayofweek("event_time").isin(1, 7)  # Sunday = 1, Saturday = 7
    return events.groupBy("user_id").agg(
        *[_share((hour >= lo) & (hour < hi), total).alias(f"time_{name}")
          for name, (lo, hi) in DAYPARTS.items()],
        _share(weekend, total).alias("time_weekend"),
    )


def latest_profiles(users: DataFrame) -> DataFrame:
    """One row per user of bronze/users: the one of the latest ingest batch (a user's
    profile may be ingested again, changed); any one of a batch's duplicates."""
    if BATCH not in users.columns:
        return users.dropDuplicates(["user_id"])
    order = Window.partitionBy("user_id").orderBy(F.desc(BATCH))
    return (users.withColumn("__rank", F.row_number().over(order))
            .where(F.col("__rank") == 1).drop("__rank"))


def numeric_means(users: DataFrame, numeric: list[str]) -> dict[str, float]:
    """The mean of each numeric attribute over the users' latest profiles (0 when none has
    a value): what :func:`profile_attributes` fills a missing value with."""
    if not numeric:
        return {}
    row = latest_profiles(users).agg(
        *[F.avg(F.col(n).cast("double")).alias(n) for n in numeric]).first().asDict()
    return {n: float(row[n] or 0.0) for n in numeric}


def profile_attributes(users: DataFrame, categorical: dict[str, list[str]],
                       numeric: list[str], means: dict[str, float] | None = None) -> DataFrame:
    """Numeric attributes (missing → ``means``, by default :func:`numeric_means`, with a
    flag) and one-hot levels.

    ``categorical`` maps each attribute to the levels kept; other values fall into
    ``_other`` and missing ones into ``_missing`` (a level of that name gets a suffix, see
    :func:`level_columns`).
    """
    if means is None:
        means = numeric_means(users, numeric)
    users = latest_profiles(users)
    cols: list[Column] = [F.col("user_id")]
    for name in numeric:
        cols.append(F.col(name).cast("double").alias(f"attr_{name}"))
        cols.append(F.col(name).isNull().cast("double").alias(f"attr_{name}_missing"))
    for name, levels in categorical.items():
        value = F.col(name)
        other, missing = f"attr_{name}_other", f"attr_{name}_missing"
        for level, column in zip(levels, level_columns(f"attr_{name}", levels,
                                                       (other, missing))):
            cols.append((value == level).cast("double").alias(column))
        cols.append((value.isNotNull() & ~value.isin(levels)).cast("double").alias(other))
        cols.append(value.isNull().cast("double").alias(missing))
    out = users.select(*cols)
    if numeric:
        out = out.fillna({f"attr_{n}": means[n] for n in numeric})
    return out.fillna(0.0)


def content_stats(content: DataFrame) -> DataFrame:
    """How much each user writes, and how they rate."""
    return content.groupBy("user_id").agg(
        F.count(F.lit(1)).cast("double").alias("content_n"),
        F.avg("rating").alias("content_avg_rating"),
        F.coalesce(F.avg(F.length("text")), F.lit(0.0)).cast("double")
        .alias("content_text_length"),
    )


def join_groups(base: DataFrame, groups: list[DataFrame]) -> DataFrame:
    """Left-join feature groups onto ``base`` (the users with events); absent stays null."""
    out = base
    for group in groups:
        out = out.join(group, "user_id", "left")
    return out


def impute(df: DataFrame, means: dict[str, float],
           imputation: LinearModels | None = None) -> DataFrame:
    """Fill absent values: level columns (:data:`MEAN_IMPUTED`) with their prediction by
    ``imputation`` where it has one, else with their mean from ``means``; every other column
    (counts and shares) with 0."""
    if imputation is not None and imputation.models:
        predicted = "_predicted"
        df = df.withColumn(predicted, imputation.predictions()).select(*[
            F.coalesce(F.col(c), F.col(predicted)[c]).alias(c) if c in imputation.models
            else F.col(c) for c in df.columns])
    levels = {c: float(m or 0.0) for c, m in means.items() if MEAN_IMPUTED.match(c)}
    return df.fillna(levels).fillna(0.0)


@dataclass
class LinearModels:
    """Least-squares predictions of columns from predictor columns, in the scaler's
    signed-log space (:meth:`Scaler._pre`); ``r2`` is each fit's share of explained variance
    on the rows it was fitted on."""

    predictors: list[str]
    models: dict[str, tuple[float, list[float]]]  # column -> (intercept, weight per predictor)
    r2: dict[str, float]

    def predictions(self) -> Column:
        """Every model's prediction, a struct with one field per column, computed as one
        matrix product per batch of rows: written as Spark expressions, the terms (columns
        times predictors) would make generated code beyond the JVM's 64 KB method limit."""
        targets = list(self.models)
        intercepts = np.array([self.models[t][0] for t in targets])
        weights = np.array([self.models[t][1] for t in targets]).T  # predictors x targets
        logged = np.array([t in LOG_COLUMNS for t in targets])

        def predict(x: pd.DataFrame) -> pd.DataFrame:
            value = intercepts + x.to_numpy(dtype=float) @ weights
            back = value[:, logged]  # back from the signed-log space
            value[:, logged] = np.sign(back) * np.expm1(np.abs(back))
            return pd.DataFrame(value, columns=targets)

        udf = F.pandas_udf(predict, ", ".join(f"`{t}` double" for t in targets))
        return udf(F.struct(*[Scaler._pre(p).alias(p) for p in self.predictors]))


def _merge_moments(parts):
    """(count, mean, scatter about the mean) of the union of the parts, merged in order."""
    count, mean, scatter = 0, None, None
    for n, m, c in parts:
        if n == 0:
            continue
        if count == 0:
            count, mean, scatter = n, m, c
            continue
        delta = m - mean
        total = count + n
        scatter = scatter + c + np.outer(delta, delta) * count * n / total
        mean = mean + delta * n / total
        count = total
    return count, mean, scatter


def _chunk_moments(rows: list[tuple]) -> tuple[int, np.ndarray, np.ndarray]:
    values = np.asarray(rows, dtype=float)
    mean = values.mean(axis=0)
    centred = values - mean
    return len(values), mean, centred.T @ centred


def _moments(df: DataFrame, columns: list[str], chunk: int = 10_000
             ) -> tuple[np.ndarray, np.ndarray]:
    """Means and covariance matrix of ``columns``, in one pass: each partition's moments by
    numpy, ``chunk`` rows at a time, merged on the driver in partition order (so that a
    re-run gives the same bits, whatever order the tasks finish in)."""
    def partition(rows):
        rows, merged = iter(rows), (0, None, None)
        while batch := list(itertools.islice(rows, chunk)):
            merged = _merge_moments([merged, _chunk_moments(batch)])
        yield merged

    parts = df.select(*columns).rdd.map(tuple).mapPartitions(partition).collect()
    count, mean, scatter = _merge_moments(parts)
    return mean, scatter / count


def least_squares(rows: DataFrame, predictors: list[str], targets: list[str],
                  ridge: float = 1e-3) -> LinearModels:
    """One linear model per target column over ``predictors`` (all in the signed-log space),
    from the moments of one Spark pass, solved on the driver, ridge-regularised on the
    correlation matrix against collinear shares."""
    names = predictors + targets
    mean, cov = _moments(rows.select(*[Scaler._pre(c).alias(c) for c in names]).na.drop(),
                         names)
    p = len(predictors)
    std = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale = np.where(std > 1e-12, std, np.inf)
    corr = cov / np.outer(scale, scale)
    beta = np.linalg.solve(corr[:p, :p] + ridge * np.eye(p), corr[:p, p:])
    models, r2 = {}, {}
    for j, target in enumerate(targets):
        weights = beta[:, j] * std[p + j] / scale[:p]
        models[target] = (float(mean[p + j] - weights @ mean[:p]), weights.tolist())
        r2[target] = float(beta[:, j] @ corr[:p, p + j])
    return LinearModels(predictors, models, r2)


def fit_imputation(df: DataFrame, groups: dict[str, list[str]], stats: dict[str, dict],
                   ridge: float = 1e-3) -> LinearModels:
    """Absent levels (:data:`MEAN_IMPUTED`: a user without reviews has no rating and no text
    vector) as their linear prediction from the columns no user lacks, fitted on the users
    who have them (:func:`least_squares`); one fit per group, since a group's columns are
    absent together.

    The population mean puts every such user on one point, far from the mean of a segment
    whose users write a lot and alike, so that a mixture takes its users who did not write
    for another segment; the prediction puts them where users like them are.
    """
    predictors = [c for cols in groups.values() for c in cols
                  if stats[c]["null_share"] == 0 and not MEAN_IMPUTED.match(c)
                  and stats[c]["min"] != stats[c]["max"]]
    models, r2 = {}, {}
    for cols in groups.values() if predictors else []:
        targets = [c for c in cols if MEAN_IMPUTED.match(c) and 0 < stats[c]["null_share"] < 1
                   and stats[c]["min"] != stats[c]["max"]]
        if not targets:
            continue
        fit = least_squares(df.where(F.col(targets[0]).isNotNull()), predictors, targets, ridge)
        models.update(fit.models)
        r2.update(fit.r2)
    return LinearModels(predictors, models, r2)


def fill_absent(joined: DataFrame, groups: dict[str, list[str]], stats: dict[str, dict],
                method: str = "regression") -> tuple[DataFrame, LinearModels | None]:
    """:func:`impute` on the joined groups with their own statistics (:func:`column_stats`):
    absent levels predicted from the other columns (``method="regression"``, see
    :func:`fit_imputation`, also returned) or set to their mean (``"mean"``)."""
    imputation = fit_imputation(joined, groups, stats) if method == "regression" else None
    return impute(joined, {c: st["mean"] for c, st in stats.items()}, imputation), imputation


def fuse(base: DataFrame, groups: list[DataFrame], method: str = "regression") -> DataFrame:
    """:func:`join_groups` then :func:`fill_joined`."""
    return fill_joined(join_groups(base, groups), [base, *groups], method)


def fill_joined(joined: DataFrame, groups: list[DataFrame], method: str = "regression"
                ) -> DataFrame:
    """:func:`fill_absent` on ``joined``, the :func:`join_groups` of ``groups``, with its own
    statistics; without a level column (:data:`MEAN_IMPUTED`) to impute, absent values are 0
    and no statistic is computed (each would be one more pass over the groups)."""
    columns = {str(i): [c for c in g.columns if c != "user_id"] for i, g in enumerate(groups)}
    names = [c for cols in columns.values() for c in cols]
    if not any(MEAN_IMPUTED.match(c) for c in names):
        return joined.fillna(0.0)
    return fill_absent(joined, columns, column_stats(joined, names), method)[0]


def column_stats(df: DataFrame, columns: list[str]) -> dict[str, dict]:
    """Share of nulls, min, max and mean of each column, in one aggregation of its cells
    (:func:`persona.runtime.spark.column_cells`); min, max and mean are None for a column
    without values."""
    rows = column_cells(df, {c: F.col(c) for c in columns}).groupBy("name").agg(
        F.avg(F.col("value").isNull().cast("double")).alias("null_share"),
        F.min("value").alias("min"), F.max("value").alias("max"),
        F.avg("value").alias("mean")).collect()
    found = {r["name"]: r for r in rows}
    none = {"null_share": 1.0, "min": None, "max": None, "mean": None}
    return {c: {k: found[c][k] for k in none} if c in found else dict(none) for c in columns}


@dataclass
class Scaler:
    """Per-column transform for the network: signed log, z-score, clip, group weight."""

    columns: list[str]
    means: dict[str, float]
    stds: dict[str, float]
    weights: dict[str, float]
    clip: float = 5.0

    @staticmethod
    def _pre(name: str) -> Column:
        col = F.col(name).cast("double")
        if name in LOG_COLUMNS:
            return F.signum(col) * F.log1p(F.abs(col))
        return col

    @classmethod
    def fit(cls, df: DataFrame, groups: dict[str, list[str]], clip: float = 5.0,
            group_weights: dict[str, float] | None = None) -> "Scaler":
        """Means and standard deviations in one aggregation of the columns' cells
        (:func:`persona.runtime.spark.column_cells`).

        Each group's columns are weighted by 1/sqrt(group size), so that every group
        contributes the same total variance and a wide group cannot drown a narrow one;
        ``group_weights`` (default 1) multiplies a group's columns on top of that.
        """
        columns = [c for cols in groups.values() for c in cols]
        stats = {r["name"]: r.asDict() for r in column_cells(df, {c: cls._pre(c) for c in columns})
                 .groupBy("name").agg(F.avg("value").alias("mean"),
                                      F.stddev_pop("value").alias("std")).collect()}
        weights = {c: (group_weights or {}).get(name, 1.0) / math.sqrt(len(cols))
                   for name, cols in groups.items() for c in cols}
        return cls(columns,
                   {c: float(stats.get(c, {}).get("mean") or 0.0) for c in columns},
                   {c: float(stats.get(c, {}).get("std") or 0.0) for c in columns},
                   weights, clip)

    def constant_columns(self) -> list[str]:
        return [c for c in self.columns if self.stds[c] < 1e-12]

    def transform(self, df: DataFrame, output: str = "features") -> DataFrame:
        """Add ``output``: array<float> of the scaled columns, in ``self.columns`` order."""
        scaled = []
        for c in self.columns:
            std = self.stds[c]
            z = (self._pre(c) - F.lit(self.means[c])) / F.lit(std) if std > 1e-12 else F.lit(0.0)
            z = F.greatest(F.lit(-self.clip), F.least(F.lit(self.clip), z))
            scaled.append((z * F.lit(self.weights[c])).cast("float"))
        return df.withColumn(output, F.array(*scaled))


def window_lookback(windows: list[int]) -> int:
    """Days before ``as_of`` that the windows group (:func:`window_shares`) looks at: events
    older than this count only in the totals."""
    return max(max(windows), 2 * min(windows))


def window_sums(events: DataFrame, as_of, windows: list[int], purchase_types: list[str]
                ) -> DataFrame:
    """What :func:`window_shares` divides: per user, the events, purchases and spend in each
    window (``w<days>_events``, ``_purchases``, ``_spend``), the events of the trend's two
    spans (``recent``, ``before``) and all of them (``events``, ``purchases``, ``spend``: the
    behaviour group's n_events, n_purchases and monetary)."""
    terms = _window_terms(windows, purchase_types)
    inside = _window_spans(windows, _age(as_of))
    is_purchase, spend = _purchase_values(purchase_types)
    return events.groupBy("user_id").agg(
        *[F.sum(inside[span].cast("double") * value).alias(name)
          for name, (span, value) in terms.items()],
        F.count(F.lit(1)).cast("double").alias("events"),
        F.sum(is_purchase).alias("purchases"), F.sum(spend).alias("spend"))


def _age(as_of, time: str = "event_time") -> Column:
    """Days from the timestamp column ``time`` (each event's, by default) to ``as_of``."""
    return (F.unix_timestamp(F.lit(as_of).cast("timestamp"))
            - F.unix_timestamp(time)) / SECONDS_PER_DAY


def _purchase_values(purchase_types: list[str]) -> tuple[Column, Column]:
    """Per event: 1 for a purchase (else 0), and its spend (0 for anything else)."""
    is_purchase = F.col("event_type").isin(purchase_types).cast("double")
    spend = F.when(is_purchase == 1, F.coalesce(F.col("amount"), F.lit(0.0))).otherwise(0.0)
    return is_purchase, spend


def _window_spans(windows: list[int], age: Column) -> dict[str, Column]:
    """Whether an event of ``age`` days falls in each window (``w<days>``) and in the
    trend's span before the shortest one (``before``)."""
    span = min(windows)
    inside = {f"w{w}": age < w for w in windows}
    inside["before"] = (age >= span) & (age < 2 * span)
    return inside


def _window_terms(windows: list[int], purchase_types: list[str]
                  ) -> dict[str, tuple[str, Column]]:
    """Each window sum by name: the span it counts (:func:`_window_spans`) and what an event
    adds to it."""
    is_purchase, spend = _purchase_values(purchase_types)
    terms = {}
    for w in windows:
        terms |= {f"w{w}_events": (f"w{w}", F.lit(1.0)),
                  f"w{w}_purchases": (f"w{w}", is_purchase),
                  f"w{w}_spend": (f"w{w}", spend)}
    return terms | {"recent": (f"w{min(windows)}", F.lit(1.0)), "before": ("before", F.lit(1.0))}


def window_shares(sums: DataFrame, windows: list[int]) -> DataFrame:
    """The windows group, from :func:`window_sums`: when the activity happened, the share of
    the user's events, purchases and spend that fall in each trailing window of ``windows``
    days, and a trend.

    Shares rather than counts, so that the group describes timing and leaves the amount of
    activity to the behaviour group (counts again here would weigh volume twice).
    ``trend`` compares the last ``windows[0]`` days with the same span just before it
    (log ratio: > 0 when the user is speeding up, < 0 when slowing down).
    """
    shares = _share_columns(windows, F.col)
    return sums.select("user_id", *[c.alias(name) for name, c in shares.items()])


def _share_columns(windows: list[int], sum_of: Callable[[str], Column]) -> dict[str, Column]:
    """The windows group's columns by name, over the sums of :func:`window_sums`, each given
    by name by ``sum_of``; a user without events in the windows may have null sums: they
    count 0."""
    part = lambda name: F.coalesce(sum_of(name), F.lit(0.0))
    share = lambda name, whole: F.coalesce(part(name) / sum_of(whole), F.lit(0.0))
    cols: dict[str, Column] = {}
    for w in windows:
        cols[f"w{w}_event_share"] = share(f"w{w}_events", "events")
        cols[f"w{w}_purchase_share"] = share(f"w{w}_purchases", "purchases")
        cols[f"w{w}_spend_share"] = share(f"w{w}_spend", "spend")
    cols["trend"] = F.log1p(part("recent")) - F.log1p(part("before"))
    return cols


# Each user's window sums (:func:`window_sums`) as one struct column of
# silver/user_aggregates: what :func:`aged_windows` moves forward.
WINDOW_SUMS = "window_sums"


def kept_window_sums(sums: DataFrame) -> DataFrame:
    """``user_id`` and the :data:`WINDOW_SUMS` struct of :func:`window_sums`' rows (all of
    their columns: the windows group reads the same, so Spark computes them once)."""
    return sums.select("user_id", F.struct(*[c for c in sums.columns if c != "user_id"])
                       .alias(WINDOW_SUMS))


# Behaviour columns that count days back from as_of: they grow with it, event or not.
AGEING_COLUMNS = ("recency_days", "tenure_days")


def aged(aggregates: DataFrame, days: float) -> DataFrame:
    """Users' aggregates ``days`` later, without new events: the days since their last and
    first events grow; every other column but the windows group (:func:`aged_windows`)
    does not depend on when it is read."""
    return aggregates.select(*[
        (F.col(c) + F.lit(days)).alias(c) if c in AGEING_COLUMNS else F.col(c)
        for c in aggregates.columns])


def aged_windows(aggregates: DataFrame, events: DataFrame, since, as_of, windows: list[int],
                 purchase_types: list[str]) -> DataFrame:
    """The windows group and :data:`WINDOW_SUMS` of ``aggregates``, made at ``since``, moved
    to ``as_of`` for users without events after ``since``: each sum less what its span lost
    and plus what it gained in between, read from the events that changed span (of
    ``events``, which may hold other users'); the totals stay."""
    terms = _window_terms(windows, purchase_types)
    before, after = _window_spans(windows, _age(since)), _window_spans(windows, _age(as_of))
    moved = {span: after[span].cast("double") - before[span].cast("double") for span in after}
    lookback = window_lookback(windows)  # no span reaches further back
    changes = (events.where((F.col("event_time") > F.lit(since - dt.timedelta(days=lookback)))
                            & (F.col("event_time") <= F.lit(as_of)))
               .where(F.greatest(*[F.abs(m) for m in moved.values()]) > 0)
               .groupBy("user_id")
               .agg(*[F.sum(moved[span] * value).alias(f"_moved_{name}")
                      for name, (span, value) in terms.items()]))
    kept = lambda name: F.col(f"{WINDOW_SUMS}.{name}")
    now = {name: kept(name) + F.coalesce(F.col(f"_moved_{name}"), F.lit(0.0))
           if name in terms else kept(name)  # the totals: no new events
           for name in aggregates.schema[WINDOW_SUMS].dataType.fieldNames()}
    shares = _share_columns(windows, now.__getitem__)
    return aggregates.join(changes, "user_id", "left").select(*[
        shares[c].alias(c) if c in shares
        else F.struct(*[v.alias(n) for n, v in now.items()]).alias(WINDOW_SUMS)
        if c == WINDOW_SUMS else F.col(c) for c in aggregates.columns])


def diversity(events: DataFrame) -> DataFrame:
    """Distinct items, category entropy (nats), events per session and mean gap in days
    between active days."""
    per_category = (events.where(F.col("category").isNotNull())
                    .groupBy("user_id", "category").count())
    entropy = (per_category
               .withColumn("p", F.col("count") / F.sum("count").over(
                   Window.partitionBy("user_id")))
               .groupBy("user_id").agg((-F.sum(F.col("p") * F.log("p"))).alias("category_entropy")))
    days = F.countDistinct(F.to_date("event_time"))
    span = (F.unix_timestamp(F.max("event_time")) - F.unix_timestamp(F.min("event_time"))) \
        / SECONDS_PER_DAY
    activity = events.groupBy("user_id").agg(
        F.countDistinct("item_id").cast("double").alias("n_items"),
        (F.count(F.lit(1)) / F.greatest(F.countDistinct("session_id"), F.lit(1)))
        .cast("double").alias("events_per_session"),
        F.when(days > 1, span / (days - 1)).otherwise(0.0).alias("mean_gap_days"),
    )
    return activity.join(entropy, "user_id", "left").fillna(0.0, ["category_entropy"])


def _words(content: DataFrame) -> DataFrame:
    """``(user_id, words)``: each review's words (letters only, 2+ long, stop words out)."""
    from pyspark.ml.feature import RegexTokenizer, StopWordsRemover

    docs = content.where(F.col("text").isNotNull()).select("user_id", "text")
    words = RegexTokenizer(inputCol="text", outputCol="tokens", pattern="[^\\p{L}]+",
                           minTokenLength=2).transform(docs)
    return StopWordsRemover(inputCol="tokens", outputCol="words").transform(words)


def text_model(content: DataFrame, size: int, seed: int, min_count: int = 2):
    """A Word2Vec model (MLlib) of ``size`` dimensions trained on the reviews' words."""
    from pyspark.ml.feature import Word2Vec

    return Word2Vec(vectorSize=size, minCount=min_count, seed=seed, inputCol="words",
                    outputCol="vector", maxIter=2).fit(_words(content))


def text_vectors(content: DataFrame, model) -> DataFrame:
    """Each user's reviews as the mean vector of their words under ``model``
    (:func:`text_model`). Columns ``text_0 .. text_{size-1}``; users without text get none
    (zeros after fusion)."""
    from pyspark.ml.functions import vector_to_array

    size = model.getVectorSize()
    vectors = model.transform(_words(content)).withColumn("v", vector_to_array("vector"))
    return vectors.groupBy("user_id").agg(
        *[F.avg(F.col("v")[i]).alias(f"text_{i}") for i in range(size)])


@dataclass(frozen=True)
class SequenceLayout:
    """How a user's recent events are laid out in the flattened sequence: ``steps`` events,
    oldest first (left-padded with zero steps), each ``[is_event, one-hot event type,
    one-hot category, gap]``."""

    steps: int
    event_types: tuple[str, ...]
    categories: tuple[str, ...]

    @property
    def step_size(self) -> int:
        return 2 + len(self.event_types) + len(self.categories)

    @property
    def size(self) -> int:
        return self.steps * self.step_size


# Gaps are log1p(seconds since the user's previous event) over log1p(this), capped at 1;
# a user's first event gets 1 (nothing before it).
GAP_SCALE_SECONDS = 365 * SECONDS_PER_DAY


def sequences(events: DataFrame, layout: SequenceLayout) -> DataFrame:
    """Each user's last ``layout.steps`` events as one flat array<float> ``sequence`` of
    ``layout.size`` values (see :class:`SequenceLayout`); ties in time are ordered by event
    type and category so that a rebuild gives the same sequence."""
    order = Window.partitionBy("user_id").orderBy("event_time", "event_type", "category")
    gap = F.unix_timestamp("event_time") - F.unix_timestamp(F.lag("event_time").over(order))
    step = F.array(
        F.lit(1.0),
        *[(F.col("event_type") == t).cast("double") for t in layout.event_types],
        *[F.coalesce((F.col("category") == c).cast("double"), F.lit(0.0))
          for c in layout.categories],
        F.coalesce(F.least(F.lit(1.0), F.log1p(gap) / F.lit(math.log1p(GAP_SCALE_SECONDS))),
                   F.lit(1.0)),
    )
    recent = (events
              .select("user_id", F.row_number().over(order).alias("position"),
                      F.count(F.lit(1)).over(Window.partitionBy("user_id")).alias("n"),
                      step.alias("step"))
              .where(F.col("position") > F.col("n") - layout.steps))
    padding = F.array(*[F.lit(0.0)] * layout.step_size)
    steps = F.transform(F.sort_array(F.collect_list(F.struct("position", "step"))),
                        lambda s: s["step"])
    return recent.groupBy("user_id").agg(steps.alias("_steps")).select(
        "user_id",
        F.flatten(F.concat(F.array_repeat(padding, F.lit(layout.steps) - F.size("_steps")),
                           F.col("_steps"))).cast("array<float>").alias("sequence"))


def sequence_weight(df: DataFrame, column: str = "sequence") -> float:
    """1/sqrt(total variance of the values of ``column``), so that the sequence carries the
    same total variance in the network's input as any other feature group. One pass of
    MLlib's vector summarizer: per value, the mean and the root of the sum of squares (one
    aggregate per value would make generated code too large)."""
    found = (df.where(F.col(column).isNotNull()).groupBy(F.lit(1))  # no row: no group
             .agg(Summarizer.metrics("count", "mean", "normL2")
                  .summary(array_to_vector(column)).alias("s")).first())
    if found is None:
        return 1.0
    summary = found["s"]
    means, roots = summary["mean"].toArray(), summary["normL2"].toArray()
    variance = float((roots ** 2).sum() / summary["count"] - (means ** 2).sum())
    return 1.0 / math.sqrt(variance) if variance > 1e-12 else 1.0


def with_sequence(df: DataFrame, weight: float, size: int, output: str = "features") -> DataFrame:
    """Append the weighted ``sequence`` (zeros for a user without one) to ``output`` and
    drop it."""
    seq = F.coalesce(F.col("sequence"), F.array_repeat(F.lit(0.0).cast("float"), size))
    weighted = F.transform(seq, lambda x: (x * F.lit(weight)).cast("float"))
    return df.withColumn(output, F.concat(F.col(output), weighted)).drop("sequence")
