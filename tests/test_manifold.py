"""segment.manifold: umap on a hand-built lake of two interleaved half-moons, where K-Means on
the raw coordinates cuts both moons in half and K-Means on the UMAP manifold separates them;
the settings' checks; the distributed mapping against UMAP's own transform."""
import pickle

import numpy as np
import pytest
from pyspark.sql import functions as F
from sklearn.datasets import make_moons

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.tables import Lake
from persona.pipeline import run_single
from persona.privacy.pseudonyms import Ids
from persona.segmentation.manifold import UmapSpec, fit_umap, project, sample_points
from tests.conftest import make_config

pytestmark = pytest.mark.stage

SPEC = UmapSpec(n_components=2, n_neighbors=15, min_dist=0.0, sample=200, seed=7)


@pytest.fixture(scope="module")
def moons():
    """300 users on two half-moons (labels 0 and 1)."""
    x, y = make_moons(300, noise=0.06, random_state=0)
    return [(f"u{i:03d}", x[i].astype(float).tolist(), int(y[i])) for i in range(300)]


@pytest.mark.parametrize("key, value, message", [
    ("manifold", "tsne", "segment.manifold must be one of none, umap"),
    ("umap.min_dist", 2, r"segment.umap.min_dist must be in \[0, 1\]"),
    ("umap.n_neighbors", 1, "segment.umap.n_neighbors must be >= 2"),
    ("umap.sample", 0, "segment.umap.sample must be >= 10"),
])
def test_configuration_errors(key, value, message):
    config = Config({"segment": {"manifold": "umap"}})
    with pytest.raises(PersonaError, match=message):
        config.set(f"segment.{key}", value)


@pytest.mark.parametrize("extra, message", [
    ({"method": "idec"}, "segment.method=idec .* cannot be combined with segment.manifold=umap"),
    ({"model_uri": "models:/persona-kmeans/1"}, "cannot be used with segment.model_uri"),
])
def test_manifold_does_not_go_with(tmp_path, extra, message):
    config = make_config(str(tmp_path), segment={"k": 2, "manifold": "umap", **extra})
    with pytest.raises(PersonaError, match=message):
        run_single("segment", config)


def test_sample_is_bounded_and_ignores_partitioning(spark, moons):
    df = spark.createDataFrame(moons, "user_id string, embedding array<float>, truth int")
    first = sample_points(df, 50, seed=7)
    again = sample_points(df.repartition(5), 50, seed=7)
    assert first.shape == (50, 2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, sample_points(df, 50, seed=8))


def test_project_matches_umap_transform(spark, moons):
    points = np.array([x for _, x, _ in moons], dtype=np.float32)
    reducer = fit_umap(points[:200], SPEC)
    df = spark.createDataFrame(moons, "user_id string, embedding array<float>, truth int")
    mapped = project(df.repartition(3), pickle.dumps(reducer)).orderBy("user_id").collect()
    np.testing.assert_allclose(np.array([r["embedding"] for r in mapped]),
                               reducer.transform(points), atol=1e-4)


def test_umap_segments_separate_the_moons(spark, tmp_path, moons):
    """200 users learn the manifold, all 300 are mapped onto it; evaluate finds the space
    again through meta/models."""
    config = make_config(str(tmp_path), segment={
        "k": 2, "seed": 7, "max_iter": 30, "manifold": "umap",
        "umap": {"n_components": 2, "n_neighbors": 15, "sample": 200}},
        evaluate={"truth": {"path": str(tmp_path / "truth.csv"), "label_column": "moon"},
                  "stability_runs": 1, "sample": 300})
    lake = Lake(spark, config.path_of("lake.root"))
    pid = Ids.of(config).value  # the lake holds pseudonyms, truth.csv the raw ids
    lake.overwrite(spark.createDataFrame(
        [(pid(u), *x, x, "fs1") for u, x, _ in moons],
        "user_id string, x double, y double, features array<float>, "
        "feature_set_version string"), "silver/user_features")
    lake.overwrite(spark.createDataFrame(
        [(pid(u), x, "enc1", "fs1") for u, x, _ in moons],
        "user_id string, embedding array<float>, model_version string, "
        "feature_set_version string"), "gold/user_embeddings")
    (tmp_path / "truth.csv").write_text(
        "user_id,moon\n" + "".join(f"{u},{t}\n" for u, _, t in moons))

    first = run_single("segment", config)
    assert first["umap_sample"] == 200 and first["users"] == 300
    segments = lake.read("gold/user_segments")
    space = segments.select("encoder_version").distinct().collect()
    assert len(space) == 1
    entry = lake.read("meta/models").where(F.col("model_version") == space[0][0]).collect()
    assert [(e["kind"], e["input_model_version"], e["latent_dim"]) for e in entry] == [
        ("umap", "enc1", 2)]

    scores = run_single("evaluate", config)
    assert scores["persona.ari"] == 1.0
    assert scores["raw_kmeans.ari"] < 0.5  # K-Means cuts across the moons
    assert scores["persona.stability.ari_mean"] == 1.0

    before = {r["user_id"]: r["segment"] for r in segments.collect()}
    again = run_single("segment", config)
    assert again["rows_updated"] == 0 and again["rows_inserted"] == 0
    assert {r["user_id"]: r["segment"] for r in lake.read("gold/user_segments").collect()} \
        == before
    assert lake.read("meta/models").where(F.col("kind") == "umap").count() == 1
