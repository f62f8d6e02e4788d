"""Which tag model tags the users: the choice on validation scores worked out by hand, and
the logistic regression saved and applied as the shipped model."""
import json
import math
import os

import mlflow
import mlflow.spark
import numpy as np
import pytest

from persona.runtime.tracking import stage_run, tracking_uri
from persona.stages.tag import _fit_logistic, _logistic_proba, _save_model
from persona.tags import shipping
from persona.tags.classifier import ClassifierResult
from tests.conftest import make_config
from tests.test_tag import TAGS, portrait_run

NAN = float("nan")


@pytest.mark.unit
@pytest.mark.parametrize("scores, shipped", [
    ({"dnn": 0.705, "logreg": 0.712}, "logreg"),
    ({"dnn": 0.80, "logreg": 0.70}, "dnn"),
    ({"dnn": 0.70, "logreg": 0.70}, "logreg"),  # a tie goes to the simpler model
    ({"dnn": NAN, "logreg": 0.60}, "logreg"),
    ({"dnn": 0.60, "logreg": NAN}, "dnn"),
    ({"dnn": NAN, "logreg": NAN}, "logreg"),
])
def test_the_better_model_on_validation_is_shipped(scores, shipped):
    assert shipping.shipped_model(scores) == shipped


@pytest.mark.unit
def test_the_shipping_line_names_both_scores():
    scores = {"dnn": 0.7051, "logreg": 0.7119}
    assert shipping.shipping_line("churn", True, scores, "logreg") == (
        "tag churn: shipping logreg (validation ROC AUC 0.712 vs dnn 0.705)")
    assert shipping.shipping_line("plan", False, {"dnn": 0.5, "logreg": 0.25}, "dnn") == (
        "tag plan: shipping dnn (validation macro F1 0.500 vs logreg 0.250)")


@pytest.mark.unit
def test_binary_validation_score_is_the_roc_auc(spark):
    # p(yes) of positives 0.8 and 0.3, of negatives 0.4 and 0.1: of the 4 (positive,
    # negative) pairs, 0.8>0.4, 0.8>0.1 and 0.3>0.1 are ordered right, 0.3<0.4 not → 3/4.
    rows = spark.createDataFrame([(1, [0.2, 0.8]), (1, [0.7, 0.3]), (0, [0.6, 0.4]),
                                  (0, [0.9, 0.1])], "y int, proba array<float>")
    assert shipping.validation_score(rows, ["no", "yes"], True) == pytest.approx(0.75)


@pytest.mark.unit
def test_multiclass_validation_score_is_the_macro_f1(spark):
    # Most probable class: a→a, a→b, b→b, c→b. Class a: precision 1/1, recall 1/2, F1 2/3;
    # b: precision 1/3, recall 1/1, F1 1/2; c: nothing right, F1 0. Macro F1 (2/3+1/2)/3.
    rows = spark.createDataFrame([(0, [0.7, 0.2, 0.1]), (0, [0.3, 0.6, 0.1]),
                                  (1, [0.1, 0.8, 0.1]), (2, [0.2, 0.5, 0.3])],
                                 "y int, proba array<float>")
    assert shipping.validation_score(rows, ["a", "b", "c"], False) == pytest.approx(
        (2 / 3 + 1 / 2) / 3)


@pytest.mark.stage
def test_a_shipped_logistic_regression_is_saved_and_reloads(spark, tmp_path):
    """Saved as an MLflow Spark model beside inputs.json naming its kind; the reloaded
    model gives every user the probabilities the stage gave."""
    # x > 0 is "yes": separable, so the fitted model puts p(yes) above 0.5 exactly there.
    rows = spark.createDataFrame(
        [(f"u{i}", "train", [float(v)], int(v > 0), 1.0) for i, v in
         enumerate([-3, -2, -1.5, -1, 1, 1.5, 2, 3])],
        "user_id string, part string, x array<float>, y int, weight float")
    model = _fit_logistic(rows)
    proba = {r["user_id"]: r["proba"] for r in _logistic_proba(model, rows).collect()}
    labels = {r["user_id"]: r["y"] for r in rows.collect()}
    assert {u: int(p[1] > 0.5) for u, p in proba.items()} == labels
    config = make_config(str(tmp_path))
    with stage_run(config, "tag") as run:
        _save_model("churn", "logreg", model, None, ["features"], ["x"], ["no", "yes"], 0.4)
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                artifact_path="tags/churn/model")
    assert sorted(os.listdir(local)) == ["inputs.json", "logreg"]
    with open(os.path.join(local, "inputs.json"), encoding="utf-8") as fh:
        inputs = json.load(fh)
    assert inputs["model"] == "logreg" and inputs["threshold"] == 0.4
    reloaded = mlflow.spark.load_model(os.path.join(local, "logreg")).stages[0]
    again = {r["user_id"]: r["proba"] for r in _logistic_proba(reloaded, rows).collect()}
    assert all(math.isclose(again[u][1], proba[u][1], rel_tol=1e-6) for u in proba)


@pytest.mark.e2e
def test_each_tag_ships_its_better_model_on_validation(spark, tmp_path_factory):
    """gold/tag_metrics marks one shipped model per tag, the one of the better validation
    score that the stage logged, and the tag's MLflow parameter names the same."""
    config, lake, results, _ = portrait_run(spark, tmp_path_factory)
    rows = lake.read("gold/tag_metrics").collect()
    mlflow.set_tracking_uri(tracking_uri(config))
    run = mlflow.search_runs(
        experiment_names=[config.get("mlflow.experiment")],
        filter_string="tags.`persona.stage` = 'tag' and attributes.status = 'FINISHED'",
        output_format="list")[0]
    for tag in TAGS:
        shipped = [r["model"] for r in rows if r["tag"] == tag and r["shipped"]]
        measure = "roc_auc" if tag == "churn" else "f1"
        scores = {m: results["tag"][f"{tag}.{m}.validation_{measure}"]
                  for m in shipping.CANDIDATES}
        assert shipped == [shipping.shipped_model(scores)], (tag, scores)
        assert run.data.params[f"{tag}.shipped"] == shipped[0]


@pytest.mark.stage
def test_a_shipped_dnn_is_saved_as_keras_json_and_weights(tmp_path):
    dnn = ClassifierResult([0.5], [0.6], 1, '{"class_name": "Functional"}',
                           [np.ones((2, 3)), np.zeros(3)], 1.0)
    with stage_run(make_config(str(tmp_path)), "tag") as run:
        _save_model("plan", "dnn", dnn, None, ["features"], ["a", "b"], ["x", "y", "z"], None)
    local = mlflow.artifacts.download_artifacts(run_id=run.info.run_id,
                                                artifact_path="tags/plan/model")
    assert sorted(os.listdir(local)) == ["classifier.json", "inputs.json", "weights.npz"]
    with open(os.path.join(local, "inputs.json"), encoding="utf-8") as fh:
        assert json.load(fh)["model"] == "dnn"
    with np.load(os.path.join(local, "weights.npz")) as weights:
        assert [w.shape for w in weights.values()] == [(2, 3), (3,)]
