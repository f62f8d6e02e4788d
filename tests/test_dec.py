"""DEC/IDEC: the clustering math worked out by hand, the configuration checks, and one run of
the whole bring-your-own-features → train → embed → IDEC → evaluate path under Horovod."""
import numpy as np
import pytest
from pyspark.sql import functions as F

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.segmentation.dec import (label_change, nearest_center, soft_assignment,
                                      target_distribution)
from tests.conftest import make_config

pytestmark = pytest.mark.stage


def test_soft_assignment_by_hand():
    # Distances² 0 and 1 (alpha 1): kernels 1 and 1/2 → q = 2/3, 1/3.
    q = soft_assignment(np.array([[0.0, 0.0]]), np.array([[0.0, 0.0], [1.0, 0.0]]))
    assert q[0].tolist() == pytest.approx([2 / 3, 1 / 3])
    # alpha 3: kernel (1 + d²/3)^-2 = (4/3)^-2 = 9/16 for the far centre.
    q3 = soft_assignment(np.array([[0.0, 0.0]]), np.array([[0.0, 0.0], [3.0, 0.0]]), 3.0)
    assert q3[0, 1] / q3[0, 0] == pytest.approx((1 + 9 / 3) ** -2)


def test_target_distribution_uses_global_frequencies():
    q = np.array([[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]])
    frequencies = q.sum(axis=0)  # 1.2 and 1.8
    p = target_distribution(q, frequencies)
    # row 0: (0.25/1.2, 0.25/1.8) normalised = (0.6, 0.4): the rarer cluster is favoured
    assert p[0].tolist() == pytest.approx([0.6, 0.4])
    # row 2: (0.04/1.2, 0.64/1.8) normalised
    a, b = 0.04 / 1.2, 0.64 / 1.8
    assert p[2].tolist() == pytest.approx([a / (a + b), b / (a + b)])
    # the frequencies of the whole data set, not of this shard, decide
    assert target_distribution(q[:1], frequencies)[0].tolist() == pytest.approx([0.6, 0.4])


def test_label_change():
    assert label_change(None, np.array([0, 1, 1])) == 3
    assert label_change(np.array([0, 1, 1]), np.array([0, 2, 1])) == 1


def test_nearest_center(spark):
    df = spark.createDataFrame([("a", [0.1, 0.0]), ("b", [2.9, 0.2]), ("c", [1.4, 0.0])],
                               "user_id string, embedding array<float>")
    centers = [[0.0, 0.0], [3.0, 0.0], [1.5, 0.0]]
    out = {r["user_id"]: r["segment"] for r in
           df.select("user_id", nearest_center("embedding", centers).alias("segment")).collect()}
    assert out == {"a": 0, "b": 1, "c": 2}


@pytest.mark.parametrize("key, value, message", [
    ("method", "spectral", "segment.method must be one of kmeans, gmm, dec, idec"),
    ("dec.optimizer", "rmsprop", "segment.dec.optimizer must be one of adam, sgd"),
    ("dec.alpha", 0, "segment.dec.alpha must be > 0"),
    ("dec.tol", 1.5, r"segment.dec.tol must be in \[0, 1\)"),
    ("dec.update_interval", 0, "segment.dec.update_interval must be >= 1"),
])
def test_configuration_errors(key, value, message):
    config = Config({"segment": {"method": "idec"}})
    with pytest.raises(PersonaError, match=message):
        config.set(f"segment.{key}", value)


def test_dec_cannot_use_a_registered_model(tmp_path):
    config = make_config(str(tmp_path), segment={"k": 3, "method": "dec",
                                                 "model_uri": "models:/persona-kmeans/1"})
    with pytest.raises(PersonaError, match="cannot be used with segment.model_uri"):
        run_single("segment", config)


def test_idec_end_to_end(spark, tmp_path):
    """Three separated groups of 40 users in 6 features: imported, encoded, refined by IDEC
    under 2 Horovod ranks, written to gold/user_segments and scored against their labels."""
    rng = np.random.default_rng(0)
    centers = np.array([[4, 0, 0, 0, 0, 0], [0, 4, 0, 0, 0, 0], [0, 0, 4, 0, 0, 0]], float)
    rows = [(f"u{g}_{i}", *(centers[g] + rng.normal(0, 0.4, 6)).tolist(), g)
            for g in range(3) for i in range(40)]
    path = str(tmp_path / "input.parquet")
    spark.createDataFrame(rows, ["uid", *[f"x{j}" for j in range(6)], "group"]) \
        .write.parquet(path)
    config = make_config(
        str(tmp_path),
        features={"input": {"path": path, "id_column": "uid", "label_column": "group"}},
        segment={"k": 3, "seed": 7, "max_iter": 30, "method": "idec",
                 "dec": {"batch_size": 16, "update_interval": 3, "max_steps": 12,
                         "decoder_epochs": 1, "tol": 0.0}},
        evaluate={"stability_runs": 0, "sample": 200})
    config.set("train.hidden", [16])
    config.set("train.latent_dim", 3)
    config.set("train.epochs", 20)
    config.set("train.batch_size", 16)
    for stage in ("features", "train", "embed"):
        run_single(stage, config)
    segmented = run_single("segment", config)
    assert segmented["dec_steps"] == 12 and segmented["dec_converged"] == 0  # tol 0: max_steps

    lake = Lake(spark, config.path_of("lake.root"))
    segments = lake.read("gold/user_segments")
    assert segments.count() == 120
    assert {r[0] for r in segments.select("segment").distinct().collect()} == {0, 1, 2}
    refined = segments.select("encoder_version").distinct().collect()
    assert len(refined) == 1
    entry = lake.read("meta/models").where(F.col("model_version") == refined[0][0]).collect()
    assert [e["kind"] for e in entry] == ["idec"] and entry[0]["latent_dim"] == 3

    scores = run_single("evaluate", config)  # the refined space comes from meta/models
    assert scores["persona.labelled_users"] == 120
    assert scores["persona.acc"] >= 0.95
    assert scores["raw_kmeans.acc"] >= 0.95
