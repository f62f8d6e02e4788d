"""segment.method: gmm on a hand-built lake of two long, parallel groups of users: every user
spread far along one direction (how active they are, say), the groups apart along the other.
K-Means cuts across both groups; a Gaussian mixture with one shared covariance separates
them. Also: the mixture's own assignment against scikit-learn's, in numpy and in Spark."""
import numpy as np
import pytest
from sklearn.mixture import GaussianMixture

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.privacy.pseudonyms import Ids
from persona.segmentation.models import (MixtureSpec, fit_sample_kmeans, fit_sample_mixture,
                                         mixture_from_fit)
from tests.conftest import make_config

pytestmark = pytest.mark.stage


@pytest.fixture(scope="module")
def stripes():
    """300 users (x, y): x ~ N(0, 4²) in both groups, y ~ N(0 or 2.5, 0.3²)."""
    rng = np.random.default_rng(0)
    label = np.arange(300) % 2
    points = np.column_stack([rng.normal(0, 4, 300), rng.normal(2.5 * label, 0.3)])
    return points, label


def test_kmeans_cuts_across_the_stripes_and_the_mixture_does_not(stripes):
    points, label = stripes
    kmeans = fit_sample_kmeans(points, 2, seed=7, max_iter=50, n_init=5)
    mixture = fit_sample_mixture(points, 2, seed=7, n_init=5, spec=MixtureSpec())
    assert ari_of(label, kmeans.centers, points) < 0.1
    assert ari_numpy(label, mixture.predict(points)) == 1.0
    sklearn_own = GaussianMixture(2, covariance_type="tied", n_init=5, random_state=7)
    assert mixture.log_likelihood > sklearn_own.fit(points).score(points) + 0.3


@pytest.mark.parametrize("covariance", ["tied", "full", "diag", "spherical"])
def test_assignment_matches_scikit_learn_in_any_coordinates(stripes, covariance):
    """A mixture fitted on shifted, sheared points assigns the original points as
    scikit-learn assigns the transformed ones."""
    points, _ = stripes
    center, transform = np.array([1.0, -2.0]), np.array([[0.5, 0.3], [0.0, 2.0]])
    moved = (points - center) @ transform
    reference = GaussianMixture(3, covariance_type=covariance, random_state=1).fit(moved)
    model = mixture_from_fit(reference, center, transform, 0.0)
    np.testing.assert_array_equal(model.predict(points), reference.predict(moved))
    np.testing.assert_allclose(model.centers @ transform,
                               reference.means_ + center @ transform)


def test_spark_assignment_matches_numpy(spark, stripes):
    points, _ = stripes
    model = fit_sample_mixture(points, 2, seed=7, n_init=1, spec=MixtureSpec())
    df = spark.createDataFrame([(i, p.tolist()) for i, p in enumerate(points)],
                               "i int, embedding array<double>").repartition(3)
    got = {r["i"]: (r["segment"], r["distance"]) for r in model.transform(df).collect()}
    assert [got[i][0] for i in range(len(points))] == model.predict(points).tolist()
    assert got[0][1] == pytest.approx(np.linalg.norm(points[0] - model.means[got[0][0]]))


@pytest.mark.parametrize("key, value, message", [
    ("method", "em", "segment.method must be one of kmeans, gmm, dec, idec"),
    ("gmm.covariance", "banded", "segment.gmm.covariance must be one of tied, full, diag"),
    ("gmm.sample", 5, "segment.gmm.sample must be >= 10"),
    ("gmm.max_iter", 0, "segment.gmm.max_iter must be >= 1"),
])
def test_configuration_errors(key, value, message):
    config = Config({"segment": {"method": "gmm"}})
    with pytest.raises(PersonaError, match=message):
        config.set(f"segment.{key}", value)


def test_gmm_does_not_go_with_a_registered_model(tmp_path):
    config = make_config(str(tmp_path), segment={
        "k": 2, "method": "gmm", "model_uri": "models:/persona-kmeans/1"})
    with pytest.raises(PersonaError, match="cannot be used with segment.model_uri"):
        run_single("segment", config)


def test_gmm_segments_separate_the_stripes(spark, tmp_path, stripes):
    """200 of the 300 users fit the mixture, all are assigned; evaluate refits the mixture
    for stability and scores K-Means beside it; a second run changes nothing."""
    points, label = stripes
    users = [f"u{i:03d}" for i in range(len(points))]
    config = make_config(str(tmp_path), segment={
        "k": 2, "seed": 7, "method": "gmm", "gmm": {"sample": 200}},
        evaluate={"truth": {"path": str(tmp_path / "truth.csv"), "label_column": "stripe"},
                  "stability_runs": 2, "sample": 300})
    lake = Lake(spark, config.path_of("lake.root"))
    pid = Ids.of(config).value  # the lake holds pseudonyms, truth.csv the raw ids
    lake.overwrite(spark.createDataFrame(
        [(pid(u), *p.tolist(), p.tolist(), "fs1") for u, p in zip(users, points)],
        "user_id string, x double, y double, features array<float>, "
        "feature_set_version string"), "silver/user_features")
    lake.overwrite(spark.createDataFrame(
        [(pid(u), p.tolist(), "enc1", "fs1") for u, p in zip(users, points)],
        "user_id string, embedding array<float>, model_version string, "
        "feature_set_version string"), "gold/user_embeddings")
    (tmp_path / "truth.csv").write_text(
        "user_id,stripe\n" + "".join(f"{u},{t}\n" for u, t in zip(users, label)))

    first = run_single("segment", config)
    assert (first["users"], first["k"], first["gmm_sample"]) == (300, 2, 200)
    assert "training_cost" not in first and first["log_likelihood"] < 0
    segments = lake.read("gold/user_segments")
    sizes = sorted(r["count"] for r in segments.groupBy("segment").count().collect())
    assert sizes == [150, 150]

    scores = run_single("evaluate", config)
    assert scores["persona.ari"] == 1.0
    assert scores["raw_kmeans.ari"] < 0.1 and scores["pca_kmeans.ari"] < 0.1
    assert scores["persona.stability.ari_mean"] == 1.0
    # evaluate refits what segment fitted (meta/models), whatever segment.method says now:
    # K-Means refitted here would cut across the stripes.
    recorded = lake.read("meta/models").where("kind = 'segments'").collect()
    assert [(r["latent_dim"], r["input_model_version"]) for r in recorded] == [(2, "enc1")]
    config.set("segment.method", "kmeans")
    assert run_single("evaluate", config)["persona.stability.ari_mean"] == 1.0
    config.set("segment.method", "gmm")

    again = run_single("segment", config)
    assert again["rows_updated"] == 0 and again["rows_inserted"] == 0


def ari_numpy(truth, predicted) -> float:
    from sklearn.metrics import adjusted_rand_score

    return adjusted_rand_score(truth, predicted)


def ari_of(truth, centers, points) -> float:
    nearest = ((points[:, None, :] - centers[None]) ** 2).sum(axis=2).argmin(axis=1)
    return ari_numpy(truth, nearest)
