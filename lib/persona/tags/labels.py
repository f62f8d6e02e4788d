"""Profile tags: labels, class weights, predictions and evaluation (pure DataFrame functions).

Classes are addressed by their index in a ``classes`` list; a binary tag has the classes
``["no", "yes"]`` and "yes" is its positive class.
"""
from __future__ import annotations

from datetime import datetime

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

NO, YES = "no", "yes"
BINARY = [NO, YES]
BEHAVIOURS = ("churn", "high_value")
# Score bins of the ROC AUC (:func:`roc_auc`): probabilities that round to the same multiple
# of 1/AUC_BINS count as tied.
AUC_BINS = 10_000


def band_labels(bins: list[float]) -> list[str]:
    """Names of the bands between consecutive ``bins`` edges: ``[18, 25, 35]`` →
    ``["18-24", "25-34", "35+"]`` (the last edge opens the top band)."""
    fmt = lambda v: f"{v:g}"
    names = [f"{fmt(lo)}-{fmt(hi - 1)}" if float(lo).is_integer() and float(hi).is_integer()
             else f"{fmt(lo)}-{fmt(hi)}" for lo, hi in zip(bins, bins[1:])]
    return names + [f"{fmt(bins[-1])}+"]


def band(column: Column, bins: list[float]) -> Column:
    """The band of a numeric value (null below the first edge or when null)."""
    names = band_labels(bins)
    out = F.lit(None).cast("string")
    for edge, name in zip(bins, names):
        out = F.when(column >= edge, F.lit(name)).otherwise(out)
    return out


def attribute_labels(users: DataFrame, attribute: str, bins: list[float] | None = None
                     ) -> DataFrame:
    """``(user_id, label)`` for the users whose ``attribute`` is known (not null or blank);
    numeric attributes are put in bands when ``bins`` is given."""
    value = F.col(attribute)
    label = band(value.cast("double"), bins) if bins else F.trim(value.cast("string"))
    return (users.select("user_id", label.alias("label")).dropDuplicates(["user_id"])
            .where(F.col("label").isNotNull() & (F.col("label") != "")))


def horizon_purchases(events: DataFrame, cutoff: datetime, horizon_days: int,
                      purchase_types: list[str]) -> DataFrame:
    """``(user_id, _purchases, _spend)`` for every user with an event at or before
    ``cutoff``: the purchase events in ``(cutoff, cutoff + horizon_days]`` and the sum of
    their amounts (an absent amount counts 0), both 0 for a user with none."""
    population = events.where(F.col("event_time") <= F.lit(cutoff)).select("user_id").distinct()
    end = F.lit(cutoff) + F.expr(f"INTERVAL {int(horizon_days)} DAYS")
    future = (events.where((F.col("event_time") > F.lit(cutoff)) & (F.col("event_time") <= end)
                           & F.col("event_type").isin(purchase_types))
              .groupBy("user_id").agg(F.count(F.lit(1)).alias("_purchases"),
                                      F.sum(F.coalesce("amount", F.lit(0.0))).alias("_spend")))
    return population.join(future, "user_id", "left").fillna(0, ["_purchases", "_spend"])


def behaviour_labels(events: DataFrame, cutoff: datetime, horizon_days: int, kind: str,
                     purchase_types: list[str], top_share: float = 0.1) -> DataFrame:
    """``(user_id, label)`` from what users active at or before ``cutoff`` did in the
    ``horizon_days`` after it (:func:`horizon_purchases`).

    - ``churn``: "yes" when the user made no purchase in the horizon;
    - ``high_value``: "yes" when the user's spend in the horizon is above its
      ``1 - top_share`` quantile over those users (so about ``top_share`` of them), and
      positive.
    """
    joined = horizon_purchases(events, cutoff, horizon_days, purchase_types)
    if kind == "churn":
        label = F.when(F.col("_purchases") == 0, YES).otherwise(NO)
    else:
        cut = joined.approxQuantile("_spend", [1.0 - top_share], 1e-4)
        threshold = cut[0] if cut else 0.0
        label = F.when(F.col("_spend") > max(threshold, 0.0), YES).otherwise(NO)
    return joined.select("user_id", label.alias("label"))


def leaking_columns(columns: list[str], attribute: str, declared: list[str]) -> list[str]:
    """The feature columns made from ``attribute`` (``attr_<attribute>``, its levels and
    flags), which would give its value away; columns of a longer declared attribute
    name such as ``attr_plan_type_*`` for ``plan`` are not among them."""
    prefix = f"attr_{attribute}"
    longer = [f"attr_{a}_" for a in declared if a != attribute and a.startswith(attribute + "_")]
    return [c for c in columns if (c == prefix or c.startswith(prefix + "_"))
            and not any(c == o[:-1] or c.startswith(o) for o in longer)]


def class_counts(labels: DataFrame) -> dict[str, int]:
    """Users per label (a small aggregate)."""
    return {r["label"]: r["count"] for r in labels.groupBy("label").count().collect()}


def order_classes(counts: dict[str, int], binary: bool, order: list[str] | None = None
                  ) -> list[str]:
    """``["no", "yes"]`` for a binary tag; else the labels present in ``order`` (e.g. the
    bands), or by decreasing count, then name."""
    if binary:
        return list(BINARY)
    if order:
        return [c for c in order if c in counts]
    return sorted(counts, key=lambda c: (-counts[c], c))


def class_weights(counts: dict[str, int], classes: list[str]) -> list[float]:
    """Balanced weights ``n / (k * n_c)``: every class weighs the same in the loss."""
    total, k = sum(counts.get(c, 0) for c in classes), len(classes)
    return [total / (k * counts[c]) if counts.get(c) else 0.0 for c in classes]


def with_class_index(df: DataFrame, classes: list[str], weights: list[float] | None = None
                     ) -> DataFrame:
    """Add ``y`` (the label's index in ``classes``) and, given ``weights``, ``weight``."""
    index = F.create_map(*[x for i, c in enumerate(classes) for x in (F.lit(c), F.lit(i))])
    out = df.withColumn("y", index[F.col("label")].cast("int"))
    if weights is not None:
        out = out.withColumn(
            "weight", F.element_at(F.array(*[F.lit(float(w)) for w in weights]), F.col("y") + 1)
            .cast("float"))
    return out


def predict(proba: str, binary: bool, threshold: float = 0.5) -> Column:
    """The predicted class index from the probabilities in column ``proba``: binary
    ``p(yes) >= threshold``, else the most probable class."""
    if binary:
        return (F.element_at(F.col(proba), 2) >= F.lit(threshold)).cast("int")
    return (F.expr(f"array_position(`{proba}`, array_max(`{proba}`))") - 1).cast("int")


def confusion(df: DataFrame, classes: list[str], label: str = "y",
              prediction: str = "prediction") -> list[list[int]]:
    """``matrix[true][predicted]`` counts (a k x k aggregate)."""
    k = len(classes)
    matrix = [[0] * k for _ in range(k)]
    for r in df.groupBy(label, prediction).count().collect():
        matrix[r[label]][r[prediction]] = int(r["count"])
    return matrix


def scores(matrix: list[list[int]], binary: bool) -> dict[str, float]:
    """Accuracy, precision, recall and F1 from a confusion matrix: of the positive class
    (index 1) for a binary tag, else the unweighted mean over classes (macro)."""
    k = len(matrix)
    total = sum(map(sum, matrix))
    per_class = []
    for c in range(k):
        tp = matrix[c][c]
        predicted = sum(matrix[r][c] for r in range(k))
        actual = sum(matrix[c])
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class.append((precision, recall, f1))
    chosen = [per_class[1]] if binary else per_class
    mean = lambda i: sum(p[i] for p in chosen) / len(chosen)
    return {"accuracy": sum(matrix[c][c] for c in range(k)) / total if total else 0.0,
            "precision": mean(0), "recall": mean(1), "f1": mean(2)}


def threshold_counts(df: DataFrame, grid: list[float], proba: str = "proba",
                     label: str = "y") -> dict[float, tuple[int, int, int]]:
    """For each threshold t of ``grid``: (true positives, false positives, false negatives)
    of predicting "yes" when ``p(yes) >= t``. One aggregation, by how many of the thresholds
    a row's ``p(yes)`` reaches and by its label: at most (thresholds + 1) x 2 groups."""
    order = sorted(grid)
    p = F.element_at(F.col(proba), 2)
    reached = F.size(F.filter(F.array(*[F.lit(float(t)) for t in order]), lambda t: p >= t))
    groups = (df.groupBy(reached.alias("reached"), (F.col(label) == 1).alias("yes"))
              .count().collect())
    positives = sum(r["count"] for r in groups if r["yes"])
    counts = {}
    for i, t in enumerate(order):
        tp = sum(r["count"] for r in groups if r["yes"] and r["reached"] > i)
        fp = sum(r["count"] for r in groups if r["yes"] is False and r["reached"] > i)
        counts[t] = (tp, fp, positives - tp)
    return counts


def best_threshold(counts: dict[float, tuple[int, int, int]]) -> float:
    """The threshold of highest F1 (ties: the one nearest 0.5)."""
    def f1(t):
        tp, fp, fn = counts[t]
        return 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return max(counts, key=lambda t: (f1(t), -abs(t - 0.5)))


def roc_auc(df: DataFrame, classes: list[str], proba: str = "proba", label: str = "y") -> float:
    """Area under the ROC curve: of "yes" for a binary tag, else the mean one-vs-rest AUC
    over the classes present (with users of the class and of another one).

    One aggregation: per class, how many users of each score bin (the probability rounded to
    1/:data:`AUC_BINS`) are and are not of the class; pairs are counted from the bins in
    order, a pair in one bin as half a pair, like a tie. At most ``AUC_BINS + 1`` rows per
    class reach the driver, however many users there are."""
    targets = [1] if len(classes) == 2 else list(range(len(classes)))
    cells = df.select(F.col(label).alias("_y"), F.posexplode(proba).alias("_c", "_p"))
    hit = F.col("_y") == F.col("_c")
    counts = (cells.where(F.col("_c").isin(targets))
              .groupBy("_c", F.round(F.col("_p") * AUC_BINS).cast("int").alias("_bin"))
              .agg(F.sum(hit.cast("long")).alias("pos"), F.sum((~hit).cast("long")).alias("neg"))
              .collect())
    aucs = []
    for c in targets:
        bins = sorted((r["_bin"], r["pos"], r["neg"]) for r in counts if r["_c"] == c)
        positives, negatives = sum(b[1] for b in bins), sum(b[2] for b in bins)
        if not positives or not negatives:
            continue
        pairs, below = 0.0, 0
        for _, pos, neg in bins:
            pairs += pos * (below + neg / 2)
            below += neg
        aucs.append(pairs / (positives * negatives))
    return sum(aucs) / len(aucs) if aucs else float("nan")
