"""Stable segment ids across refits, the catalogue of every id ever made, and the users'
membership history (pure functions, apart from :func:`open_stays` and :func:`segment_on`,
which read the lake).

A refit numbers its segments as the fit happens to (its *labels*). Each label is matched to
the id of the previous segment it shares most users with (one to one, the largest total of
shared users), when the match is real (:func:`match_ids`); a label without a real match gets
a new id above every id ever made, so that an id is never reused.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time

import numpy as np
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (IntegerType, StringType, StructField, StructType,
                               TimestampType)
from scipy.optimize import linear_sum_assignment


CATALOGUE_TABLE = "gold/segments"
HISTORY_TABLE = "gold/segment_history"
FLOWS_TABLE = "gold/segment_flows"
HISTORY_SCHEMA = StructType([
    StructField("user_id", StringType()), StructField("segment", IntegerType()),
    StructField("valid_from", TimestampType()), StructField("valid_to", TimestampType())])


@dataclass
class Overlap:
    """Users shared by the previous segments (rows, ids ``old``) and the new fit's labels
    (columns, ``new``), and the size of each on its own side (users who left or arrived
    count on their side only)."""

    old: list[int]
    new: list[int]
    shared: np.ndarray  # len(old) x len(new)
    old_sizes: np.ndarray
    new_sizes: np.ndarray


def overlap(previous: DataFrame, labels: DataFrame) -> Overlap:
    """:class:`Overlap` of ``previous`` (user_id, segment) and ``labels`` (user_id, label),
    from one groupBy of their full outer join (at most (k + 1) x (k + 1) rows collected)."""
    rows = (previous.select("user_id", "segment")
            .join(labels.select("user_id", "label"), "user_id", "full_outer")
            .groupBy("segment", "label").count().collect())
    old = sorted({int(r["segment"]) for r in rows if r["segment"] is not None})
    new = sorted({int(r["label"]) for r in rows if r["label"] is not None})
    shared = np.zeros((len(old), len(new)), dtype=np.int64)
    old_sizes, new_sizes = np.zeros(len(old), np.int64), np.zeros(len(new), np.int64)
    for r in rows:
        i = old.index(int(r["segment"])) if r["segment"] is not None else None
        j = new.index(int(r["label"])) if r["label"] is not None else None
        if i is not None:
            old_sizes[i] += r["count"]
        if j is not None:
            new_sizes[j] += r["count"]
        if i is not None and j is not None:
            shared[i, j] = r["count"]
    return Overlap(old, new, shared, old_sizes, new_sizes)


def match_ids(found: Overlap | None, labels: list[int], next_id: int, min_overlap: float
              ) -> dict[int, int]:
    """The id of each of ``labels``: the previous id it is matched to, else a new one.

    A pair (old id, new label) is a real match when their shared users are at least
    ``min_overlap`` of the smaller of the two (the overlap coefficient,
    ``|A ∩ B| / min(|A|, |B|)``). Unlike the Jaccard index it does not punish a segment that
    grew, shrank, split or absorbed another: when a segment splits in two, the larger part
    keeps its id, and when two merge, the merged segment keeps the id of the larger; at
    0.5, a majority of one of the two lies in the other, which chance overlap between
    unrelated segments does not reach. Among real matches, the one-to-one matching with the
    most shared users is chosen (Hungarian algorithm). Labels left over get ``next_id``,
    ``next_id + 1``, ... in label order; with no previous segments (``found`` None: a first
    fit) the ids are therefore the labels' own numbers, in the order of the fit.
    """
    ids: dict[int, int] = {}
    if found is not None and found.old and found.new:
        smaller = np.minimum(found.old_sizes[:, None], found.new_sizes[None, :])
        real = (found.shared > 0) & (found.shared >= min_overlap * smaller)
        weights = np.where(real, found.shared, 0)
        for i, j in zip(*linear_sum_assignment(weights, maximize=True)):
            if real[i, j]:
                ids[found.new[j]] = found.old[i]
    for label in sorted(labels):
        if label not in ids:
            ids[label] = next_id
            next_id += 1
    return {label: ids[label] for label in labels}


def next_segment_id(catalogue: DataFrame | None, previous: Overlap | None) -> int:
    """One above the largest id ever made: in ``catalogue`` (gold/segments, retired ids
    included) or among the previous segments of ``previous``; 0 when there is none."""
    largest = list(previous.old) if previous is not None else []
    if catalogue is not None:
        largest.append(catalogue.agg(F.max("id")).first()[0])
    largest = [v for v in largest if v is not None]
    return max(largest) + 1 if largest else 0


def relabel(df: DataFrame, ids: dict[int, int], column: str = "segment") -> DataFrame:
    """``df`` with its ``column`` of labels replaced by their ids."""
    table = F.create_map(*[F.lit(v) for pair in sorted(ids.items()) for v in pair])
    return df.withColumn(column, table[F.col(column)].cast("int"))


def catalogue_changes(catalogue: DataFrame | None, live: DataFrame, model_version: str,
                      now: datetime) -> DataFrame:
    """The rows of gold/segments (id, name, size, first_seen, last_seen, model_version,
    retired) that this run adds or changes, given ``live`` (id, size, name) segments.

    A live id gets its size, ``model_version`` and ``now`` as last_seen; a new id also
    ``now`` as first_seen and its name; an id given before keeps its first_seen and name.
    An id without a name (``live`` gave none) is named when ``live`` first gives one. An id
    no longer made is retired with size 0 (last_seen and model_version kept). A row whose
    size, model_version, retired flag and name are unchanged is left out, so that an
    identical re-run changes nothing.
    """
    stamp = F.lit(now).cast("timestamp")
    live = live.select(F.col("id").cast("int"), F.col("size").cast("long"),
                       F.col("name").alias("live_name"), F.lit(True).alias("live"))
    if catalogue is None:
        catalogue = live.sparkSession.createDataFrame(
            [], "id int, name string, size long, first_seen timestamp, last_seen timestamp, "
                "model_version string, retired boolean")
    joined = catalogue.alias("t").join(live.alias("s"), "id", "full_outer")
    is_live = F.col("s.live").isNotNull()
    new = joined.select(
        "id",
        F.coalesce("t.name", "s.live_name").alias("name"),
        F.when(is_live, F.col("s.size")).otherwise(F.lit(0).cast("long")).alias("size"),
        F.coalesce("t.first_seen", stamp).alias("first_seen"),
        F.when(is_live, stamp).otherwise(F.col("t.last_seen")).alias("last_seen"),
        F.when(is_live, F.lit(model_version)).otherwise(F.col("t.model_version"))
        .alias("model_version"),
        (~is_live).alias("retired"),
        F.col("t.size").alias("_size"), F.col("t.model_version").alias("_version"),
        F.col("t.retired").alias("_retired"), F.col("t.name").alias("_name"))
    same = ((F.col("_size") == F.col("size")) & (F.col("_version") == F.col("model_version"))
            & (F.col("_retired") == F.col("retired"))
            & F.col("_name").eqNullSafe(F.col("name")))
    return new.where(~F.coalesce(same, F.lit(False))).drop("_size", "_version", "_retired",
                                                            "_name")


def moves(stays: DataFrame, current: DataFrame) -> DataFrame:
    """Each user's open stay (``old``, ``since``) beside their segment now (``new``), given
    the open ``stays`` and the ``current`` (user_id, segment); null where the user has no
    open stay or no segment now. What :func:`stay_changes` and :func:`flows` read."""
    return (stays.select("user_id", F.col("segment").alias("old"),
                         F.col("valid_from").alias("since"))
            .join(current.select("user_id", F.col("segment").alias("new")), "user_id",
                  "full_outer"))


def stay_changes(moved: DataFrame, now: datetime) -> DataFrame:
    """The gold/segment_history rows to MERGE (on user_id and valid_from, where valid_to is
    null), given the users' :func:`moves`: for a user whose segment changed or who is gone,
    the open stay closed at ``now``; for a user whose segment changed or who is new, a stay
    opened at ``now``. Unchanged users give no row."""
    stamp = F.lit(now).cast("timestamp")
    moved = moved.where(~F.col("old").eqNullSafe(F.col("new")))
    closed = moved.where(F.col("old").isNotNull()).select(
        "user_id", F.col("old").alias("segment"), F.col("since").alias("valid_from"),
        stamp.alias("valid_to"))
    opened = moved.where(F.col("new").isNotNull()).select(
        "user_id", F.col("new").alias("segment"), stamp.alias("valid_from"),
        F.lit(None).cast("timestamp").alias("valid_to"))
    return closed.unionByName(opened)


def flows(moved: DataFrame) -> DataFrame:
    """Per segment (old or new in the users' :func:`moves`): the users who entered it, left
    it, and stayed in it (segment, entered, exited, stayed)."""
    events = F.when(F.col("old").eqNullSafe(F.col("new")),
                    F.array(F.struct(F.col("new").alias("segment"),
                                     F.lit("stayed").alias("kind")))).otherwise(
        F.array(F.struct(F.col("new").alias("segment"), F.lit("entered").alias("kind")),
                F.struct(F.col("old").alias("segment"), F.lit("exited").alias("kind"))))
    counted = (moved.select(F.explode(events).alias("e")).select("e.*")
               .where(F.col("segment").isNotNull()))
    return (counted.groupBy("segment").pivot("kind", ["entered", "exited", "stayed"]).count()
            .na.fill(0).select(F.col("segment").cast("int"),
                               *[F.col(c).cast("long") for c in ("entered", "exited", "stayed")]))


def open_stays(lake) -> DataFrame:
    """The stays of gold/segment_history still open (valid_to null); none before the
    first run."""
    if not lake.exists(HISTORY_TABLE):
        return lake.spark.createDataFrame([], HISTORY_SCHEMA)
    return lake.read(HISTORY_TABLE).where(F.col("valid_to").isNull())


def segment_on(lake, user_ids, when: date | datetime) -> DataFrame:
    """The segment of each of ``user_ids`` (a list, or a DataFrame with user_id) at ``when``,
    from gold/segment_history: (user_id, segment); a user without a segment then is absent.
    A stay holds from its valid_from up to, not including, its valid_to. A datetime is an
    instant (naive, in UTC); a date is the last instant of that day, after its runs."""
    if not isinstance(when, datetime):
        when = datetime.combine(when, time.max)
    history = lake.read(HISTORY_TABLE)
    if isinstance(user_ids, DataFrame):
        history = history.join(user_ids.select("user_id").distinct(), "user_id")
    else:
        history = history.where(F.col("user_id").isin(list(user_ids)))
    stamp = F.lit(when).cast("timestamp")
    return history.where((F.col("valid_from") <= stamp)
                         & (F.col("valid_to").isNull() | (F.col("valid_to") > stamp))) \
        .select("user_id", "segment")
