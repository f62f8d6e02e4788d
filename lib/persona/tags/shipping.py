"""Which of a tag's models tags every user: the better of the DNN and the logistic
regression on the validation users.

A binary tag is judged by the ROC AUC of "yes", a multi-class tag by the macro F1 of the
most probable class. A tie, or a DNN score that cannot be computed (a single class among
the validation users), goes to the logistic regression, the simpler model.
"""
from __future__ import annotations

from pyspark.sql import DataFrame

from persona.tags import labels as tx

CANDIDATES = ("dnn", "logreg")
SIMPLER = "logreg"


def measure(binary: bool) -> str:
    """The name of the validation score that decides: ``ROC AUC`` or ``macro F1``."""
    return "ROC AUC" if binary else "macro F1"


def validation_score(validation: DataFrame, classes: list[str], binary: bool,
                     proba: str = "proba", label: str = "y") -> float:
    """:func:`measure` of one model on the validation users' ``label`` and ``proba``."""
    if binary:
        return tx.roc_auc(validation, classes, proba, label)
    predicted = validation.withColumn("prediction", tx.predict(proba, False))
    return tx.scores(tx.confusion(predicted, classes, label), False)["f1"]


def shipped_model(scores: dict[str, float]) -> str:
    """The candidate of highest validation score in ``scores`` (by model); the simpler one
    on a tie or when the other's score is NaN."""
    other = next(m for m in CANDIDATES if m != SIMPLER)
    mine, theirs = scores[other], scores[SIMPLER]
    if mine == mine and (theirs != theirs or mine > theirs):
        return other
    return SIMPLER


def shipping_line(tag: str, binary: bool, scores: dict[str, float], shipped: str) -> str:
    """``tag churn: shipping logreg (validation ROC AUC 0.712 vs dnn 0.705)``."""
    other = next(m for m in CANDIDATES if m != shipped)
    return (f"tag {tag}: shipping {shipped} (validation {measure(binary)} "
            f"{scores[shipped]:.3f} vs {other} {scores[other]:.3f})")
