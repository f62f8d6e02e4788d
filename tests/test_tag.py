"""Profile tags: labels, splits and scores on hand-made data, then once end to end.

The end-to-end run (generated data through every stage, tags trained by Horovod, then the
report) is the session's, built once by :func:`tests.runs.generated_run`; test_pipeline,
test_report and test_notebook look at the same run.
"""
import logging
import os
from datetime import datetime

import mlflow
import numpy as np
import pytest
from pyspark.sql import functions as F

from persona.config import Config
from persona.errors import PersonaError
from persona.features.build import Scaler
from persona.pipeline import run_single
from persona.privacy.pseudonyms import Ids
from persona.runtime.context import StageContext
from persona.runtime.tracking import stage_run, tracking_uri
from persona.stages import segment
from persona.stages.tag import _with_x
from persona.tags import labels as tx
from persona.tags.classifier import rank_share
from persona.tags.spec import tag_specs
from tests.runs import TAGS, generated_run

pytestmark = pytest.mark.e2e


def portrait_run(spark, tmp_path_factory):
    """The session's end-to-end run as ``(config, lake, each stage's metrics with the
    report's, data folder)``."""
    run = generated_run(spark, tmp_path_factory)
    return run.config, run.lake, {**run.results, "report": run.report}, run.data


@pytest.fixture(scope="module")
def portrait(spark, tmp_path_factory):
    return portrait_run(spark, tmp_path_factory)


# ---------------------------------------------------------------- labels

def test_bands():
    assert tx.band_labels([18, 30, 45, 60]) == ["18-29", "30-44", "45-59", "60+"]
    assert tx.band_labels([0, 0.5, 1]) == ["0-0.5", "0.5-1", "1+"]


def test_attribute_labels_keep_known_values(spark):
    users = spark.createDataFrame(
        [("u1", " pro ", 17.0), ("u2", "", 30.0), ("u3", None, 44.0), ("u4", "free", 61.0),
         ("u4", "free", 61.0)], ["user_id", "plan", "age"])
    plans = {r["user_id"]: r["label"] for r in tx.attribute_labels(users, "plan").collect()}
    assert plans == {"u1": "pro", "u4": "free"}
    ages = {r["user_id"]: r["label"]
            for r in tx.attribute_labels(users, "age", [18, 30, 45, 60]).collect()}
    assert ages == {"u2": "30-44", "u3": "30-44", "u4": "60+"}  # 17 is below every band


CUTOFF = datetime(2025, 3, 1)
EVENTS = [
    # u1: buys before and 10 days after the cutoff → not churned; spends 100 after.
    ("u1", datetime(2025, 2, 1), "purchase", 20.0),
    ("u1", datetime(2025, 3, 11), "purchase", 100.0),
    # u2: active before, only views after → churned; no spend after.
    ("u2", datetime(2025, 2, 20), "purchase", 5.0),
    ("u2", datetime(2025, 3, 5), "view", None),
    # u3: buys 40 days after, outside a 30-day horizon → churned; spend 0 in the horizon.
    ("u3", datetime(2025, 1, 15), "view", None),
    ("u3", datetime(2025, 4, 10), "purchase", 500.0),
    # u4: buys twice in the horizon → not churned; spends 30.
    ("u4", datetime(2025, 2, 28), "purchase", 9.0),
    ("u4", datetime(2025, 3, 2), "purchase", 10.0),
    ("u4", datetime(2025, 3, 30), "purchase", 20.0),
    # u5: first seen after the cutoff → not in the population.
    ("u5", datetime(2025, 3, 3), "purchase", 70.0),
]


@pytest.fixture(scope="module")
def events(spark):
    return spark.createDataFrame(EVENTS, ["user_id", "event_time", "event_type", "amount"])


def test_churn_is_no_purchase_in_the_horizon(events):
    labels = tx.behaviour_labels(events, CUTOFF, 30, "churn", ["purchase"])
    assert {r["user_id"]: r["label"] for r in labels.collect()} == {
        "u1": "no", "u2": "yes", "u3": "yes", "u4": "no"}


def test_high_value_is_the_top_spend_share_in_the_horizon(events):
    # Spend in the 30 days after the cutoff: u1 100, u2 0, u3 0, u4 30.
    top = tx.behaviour_labels(events, CUTOFF, 30, "high_value", ["purchase"], top_share=0.25)
    assert {r["user_id"]: r["label"] for r in top.collect()} == {
        "u1": "yes", "u2": "no", "u3": "no", "u4": "no"}
    half = tx.behaviour_labels(events, CUTOFF, 30, "high_value", ["purchase"], top_share=0.5)
    assert sorted(r["user_id"] for r in half.where("label = 'yes'").collect()) == ["u1", "u4"]


def test_columns_made_from_the_target_attribute_are_left_out():
    columns = ["monetary", "attr_plan_free", "attr_plan_missing", "attr_plan_type_a",
               "attr_age", "attr_age_missing", "attr_agent_x"]
    assert tx.leaking_columns(columns, "plan", ["plan", "plan_type"]) == [
        "attr_plan_free", "attr_plan_missing"]
    assert tx.leaking_columns(columns, "age", ["age", "agent"]) == ["attr_age",
                                                                    "attr_age_missing"]


# ---------------------------------------------------------------- weights and scores

def test_class_weights_balance_the_classes():
    assert tx.order_classes({"b": 10, "a": 30, "c": 10}, False) == ["a", "b", "c"]
    assert tx.order_classes({"60+": 3, "18-29": 9}, False, ["18-29", "30-44", "60+"]) == [
        "18-29", "60+"]
    assert tx.order_classes({"yes": 1}, True) == ["no", "yes"]
    assert tx.class_weights({"a": 30, "b": 10}, ["a", "b"]) == pytest.approx([40 / 60, 2.0])


def test_ranks_share_out_the_classifiers():
    # 5 tags on 2 ranks: 0, 2, 4 to rank 0; 1, 3 to rank 1. 3 tags on 4 ranks: one each for
    # ranks 0 to 2, none for rank 3.
    assert rank_share(5, 2, 0) == [0, 2, 4]
    assert rank_share(5, 2, 1) == [1, 3]
    assert [rank_share(3, 4, r) for r in range(4)] == [[0], [1], [2], []]


def test_scores_from_a_confusion_matrix():
    binary = tx.scores([[50, 10], [5, 35]], binary=True)
    assert binary == pytest.approx({"accuracy": 0.85, "precision": 35 / 45, "recall": 35 / 40,
                                    "f1": 70 / 85})
    # Macro: per class precision (8/10, 4/6, 0), recall (8/10, 4/5, 0/5).
    multi = tx.scores([[8, 2, 0], [1, 4, 0], [1, 0, 0]], binary=False)
    f1 = [0.8, 2 * (4 / 6) * 0.8 / (4 / 6 + 0.8), 0.0]
    assert multi == pytest.approx({"accuracy": 12 / 16, "precision": (0.8 + 4 / 6) / 3,
                                   "recall": (0.8 + 0.8) / 3, "f1": sum(f1) / 3})


SCORED = [  # user, part, y, p(no), p(yes)
    ("v1", "validation", 1, 0.2, 0.8), ("v2", "validation", 1, 0.6, 0.4),
    ("v3", "validation", 0, 0.7, 0.3), ("v4", "validation", 0, 0.9, 0.1),
    ("t1", "test", 1, 0.1, 0.9), ("t2", "test", 0, 0.2, 0.8),
    ("t3", "test", 1, 0.3, 0.7), ("t4", "test", 0, 0.9, 0.1),
]


@pytest.fixture(scope="module")
def scored(spark):
    rows = [(u, part, y, [p0, p1]) for u, part, y, p0, p1 in SCORED]
    return spark.createDataFrame(rows, "user_id string, part string, y int, proba array<float>")


def test_threshold_is_chosen_on_validation_users(scored):
    validation = scored.where("part = 'validation'")
    counts = tx.threshold_counts(validation, [0.2, 0.35, 0.5, 0.9])
    # p(yes) of the validation users: 0.8 (yes), 0.4 (yes), 0.3 (no), 0.1 (no).
    assert counts == {0.2: (2, 1, 0), 0.35: (2, 0, 0), 0.5: (1, 0, 1), 0.9: (0, 0, 2)}
    assert tx.best_threshold(counts) == 0.35
    # Ties go to the threshold nearest 0.5.
    assert tx.best_threshold({0.3: (1, 0, 0), 0.45: (1, 0, 0), 0.9: (0, 0, 1)}) == 0.45


def test_a_probability_equal_to_a_threshold_reaches_it(spark):
    df = spark.createDataFrame([(1, [0.5, 0.5]), (0, [0.75, 0.25])],
                               "y int, proba array<float>")
    # Thresholds in any order; p(yes) 0.5 (yes) and 0.25 (no) are exact in float.
    assert tx.threshold_counts(df, [0.5, 0.25]) == {0.25: (1, 1, 0), 0.5: (1, 0, 0)}


def test_predictions_and_roc_auc(scored, spark):
    test = scored.where("part = 'test'")
    predicted = {r["user_id"]: r["p"] for r in
                 test.select("user_id", tx.predict("proba", True, 0.75).alias("p")).collect()}
    assert predicted == {"t1": 1, "t2": 1, "t3": 0, "t4": 0}
    # Positives score 0.9 and 0.7, negatives 0.8 and 0.1: 3 of 4 pairs are ordered right.
    assert tx.roc_auc(test, ["no", "yes"]) == pytest.approx(0.75)
    multi = spark.createDataFrame([([0.2, 0.5, 0.3], 1), ([0.6, 0.3, 0.1], 0)],
                                  "proba array<float>, y int")
    assert [r[0] for r in multi.select(tx.predict("proba", False)).collect()] == [1, 0]
    assert tx.confusion(multi.withColumn("prediction", tx.predict("proba", False)),
                        ["a", "b", "c"]) == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_roc_auc_counts_a_tie_as_half_a_pair_and_averages_classes_present(spark):
    binary = spark.createDataFrame([(1, [0.5, 0.5]), (1, [0.1, 0.9]), (0, [0.5, 0.5]),
                                    (0, [0.8, 0.2])], "y int, proba array<float>")
    # Positives 0.5 and 0.9, negatives 0.5 and 0.2: the tie counts half, 3.5 of 4 pairs.
    assert tx.roc_auc(binary, ["no", "yes"]) == pytest.approx(0.875)
    multi = spark.createDataFrame([(0, [0.6, 0.3, 0.1, 0.0]), (1, [0.2, 0.5, 0.3, 0.0]),
                                   (2, [0.1, 0.2, 0.7, 0.0]), (0, [0.3, 0.6, 0.1, 0.0])],
                                  "y int, proba array<float>")
    # a: 0.6, 0.3 above 0.2, 0.1 (1); b: 0.5 above 0.3, 0.2, not 0.6 (2/3); c: 0.7 above
    # every other (1); d has no user and is left out: (1 + 2/3 + 1) / 3.
    assert tx.roc_auc(multi, ["a", "b", "c", "d"]) == pytest.approx(8 / 9)


def test_roc_auc_agrees_with_scikit_learn_on_many_scores(spark):
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    yes = np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0, 1).astype(np.float32)
    df = spark.createDataFrame([(int(a), [float(1 - b), float(b)]) for a, b in zip(y, yes)],
                               "y int, proba array<float>")
    # Probabilities in one bin of 1/10,000 tie: a few pairs in a million.
    assert tx.roc_auc(df, ["no", "yes"]) == pytest.approx(roc_auc_score(y, yes), abs=1e-4)


# ---------------------------------------------------------------- configuration

@pytest.mark.parametrize("section, message", [
    ({"x": {"label": "churn"}}, "tags.x.cutoff is missing"),
    ({"x": {"attribute": "plan", "label": "churn"}}, "needs exactly one of"),
    ({"x": {"label": "vip", "cutoff": "2025-01-01"}}, "tags.x.label must be one of"),
    ({"x": {"attribute": "age", "bins": [30, 18]}}, "tags.x.bins must be increasing"),
    ({"x": {"attribute": "plan", "inputs": ["clicks"]}}, "tags.x.inputs must be"),
    ({"x": {"attribute": "plan", "test_fraction": 0.6, "validation_fraction": 0.4}},
     "must leave users"),
    ({"a b": {"attribute": "plan"}}, "a tag name may only have"),
])
def test_bad_tag_configuration_is_one_clear_error(section, message):
    with pytest.raises(PersonaError, match=message):
        tag_specs(Config({"tags": section}))


def test_cutoff_beyond_the_data_is_refused(portrait):
    config, _, _, _ = portrait
    late = Config({**config.data, "tags": {"late": {"label": "churn", "cutoff": "2025-06-15",
                                                    "horizon_days": 60}}})
    with pytest.raises(PersonaError, match="ends after the last event"):
        run_single("tag", late)


# ---------------------------------------------------------------- end to end

def test_every_user_gets_every_tag(portrait):
    _, lake, results, _ = portrait
    assert {"segment", "tag"} <= set(results)
    users = lake.read("silver/user_features").count()
    tags = lake.read("gold/user_tags")
    assert tags.count() == 2 * users
    assert tags.select("user_id", "tag").distinct().count() == 2 * users
    values = {(r["tag"], r["value"]) for r in tags.select("tag", "value").distinct().collect()}
    assert {v for t, v in values if t == "churn"} <= {"no", "yes"}
    assert {v for t, v in values if t == "plan"} <= {"free", "plus", "pro"}
    low, high = tags.agg(F.min("probability"), F.max("probability")).first()
    assert 0.0 <= low <= high <= 1.0
    # The plan's known value rides along; behaviour tags have none.
    known = tags.where("tag = 'plan' AND observed IS NOT NULL").count()
    assert 0.8 * users < known < users
    assert tags.where("tag = 'churn' AND observed IS NOT NULL").count() == 0


def test_planted_tags_are_recovered_well_above_the_majority_class(portrait):
    _, lake, _, _ = portrait
    m = {(r["tag"], r["model"]): r for r in lake.read("gold/tag_metrics").collect()}
    assert set(m) == {(t, model) for t in TAGS for model in ("dnn", "logreg", "majority")}
    # Lapsed customers stop buying early in the window: churn is planted.
    assert m["churn", "dnn"]["f1"] > m["churn", "majority"]["f1"] + 0.3
    assert m["churn", "dnn"]["f1"] > 0.5
    assert m["churn", "dnn"]["roc_auc"] > 0.7
    assert m["churn", "logreg"]["f1"] > 0.5
    assert 0.0 < m["churn", "dnn"]["threshold"] < 1.0
    # The plan is only mildly tied to the planted segments.
    assert m["plan", "dnn"]["f1"] > m["plan", "majority"]["f1"]
    assert m["plan", "dnn"]["threshold"] is None
    for row in m.values():
        assert sum(map(sum, row["confusion"])) == row["test_users"]
        assert row["train_users"] > row["validation_users"] > 0 and row["test_users"] > 0


def test_tag_models_and_metrics_are_in_mlflow(portrait):
    config, _, results, _ = portrait
    mlflow.set_tracking_uri(tracking_uri(config))
    run = mlflow.search_runs(experiment_names=[config.get("mlflow.experiment")],
                             filter_string="tags.`persona.stage` = 'tag' and "
                                           "attributes.status = 'FINISHED'",
                             output_format="list")[0]
    for name in ("churn.dnn.f1", "churn.logreg.f1", "churn.majority.f1", "churn.dnn.roc_auc",
                 "plan.dnn.f1", "plan.logreg.accuracy", "churn.best_epoch"):
        assert name in run.data.metrics, name
    assert run.data.metrics["churn.dnn.f1"] == results["tag"]["churn.dnn.f1"]
    files = {os.path.basename(a.path) for a in mlflow.artifacts.list_artifacts(
        run_id=run.info.run_id, artifact_path="tags/churn/model")}
    shipped = {"dnn": {"classifier.json", "weights.npz"}, "logreg": {"logreg"}}
    assert files == shipped[run.data.params["churn.shipped"]] | {"inputs.json"}
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "churn.val_loss")
    assert len(history) >= run.data.metrics["churn.best_epoch"]


def test_one_horovod_job_trains_every_tag(spark, tmp_path_factory):
    """The pipeline starts Horovod once to train the autoencoder and once for both tags,
    whose DNNs each kept an epoch of their own."""
    run = generated_run(spark, tmp_path_factory)
    assert run.launches.count("_train_ranks") == 1
    assert run.launches.count("_train_rank") == 1
    for name in TAGS:
        assert run.results["tag"][f"{name}.best_epoch"] >= 1


# Phrases the planted behaviour of each generated segment should bring into its name.
PLANTED = {
    "bargain hunters": {"evening", "fashion", "beauty", "low spend", "small baskets"},
    "big spenders": {"high spend", "big baskets", "electronics"},
    "weekend browsers": {"weekend", "browsers", "sports", "books", "toys"},
    "loyal regulars": {"grocery", "morning", "frequent buyers", "bulk buyers", "buyers"},
    "lapsed customers": {"lapsed", "unhappy reviewers", "returners"},
}


def test_names_of_the_planted_segments_match_their_behaviour(portrait, spark):
    config, lake, _, data = portrait
    truth = (spark.read.option("header", True).csv(os.path.join(data, "truth.csv"))
             .select(Ids.of(config).column(F.col("user_id")).alias("user_id"),  # as in the lake
                     F.col("segment").cast("int"), "segment_name"))
    planted = {r["segment"]: r["segment_name"]
               for r in truth.select("segment", "segment_name").distinct().collect()}
    ctx = StageContext(config, spark, lake, logging.getLogger("test"))
    with stage_run(config, "explain-truth"):
        profiles = segment._profiles(ctx, truth.select("user_id", "segment"), "truth").collect()
    for p in profiles:
        words = {w.strip() for w in p["name"].split(",")}
        assert words & PLANTED[planted[p["segment"]]], (planted[p["segment"]], p["name"])
    assert profiles[0]["surrogate_fidelity"] > 0.6


def test_inputs_join_scaled_features_and_the_embedding(spark):
    users = spark.createDataFrame([("u1", 1.0), ("u2", 3.0)], ["user_id", "a"])
    embeddings = spark.createDataFrame([("u1", [0.5, 0.25]), ("u2", [0.0, 1.0])],
                                       "user_id string, embedding array<float>")
    scaler = Scaler.fit(users, {"a": ["a"]})  # mean 2, standard deviation 1
    rows = _with_x(users, ["features", "embedding"], scaler, embeddings).collect()
    assert {r["user_id"]: r["x"] for r in rows} == {"u1": [-1.0, 0.5, 0.25],
                                                    "u2": [1.0, 0.0, 1.0]}
    only = _with_x(users, ["embedding"], None, embeddings).collect()
    assert {r["user_id"]: r["x"] for r in only} == {"u1": [0.5, 0.25], "u2": [0.0, 1.0]}
