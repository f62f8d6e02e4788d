"""Segment quality: metrics on hand-made data whose values were worked out by hand, the choice
of k, bring-your-own features and the evaluate stage on a small hand-built lake."""
import math

import numpy as np
import pytest
import yaml
from pyspark.sql import functions as F

from persona.errors import PersonaError
from persona.features import external as fi
from persona.features.external import settings
from persona.lake.tables import Lake
from persona.privacy.pseudonyms import Ids
from persona.runtime.context import run_stage
from persona.segmentation import metrics as m
from persona.segmentation.models import (MixtureSpec, MllibKMeans, NearestCenters, SampleMixture,
                                         Segmenter, check_segments, fit_kmeans,
                                         plot_k_selection, segment_sizes, select_k)
from persona.segmentation.profiles import with_vector
from persona.stages import PIPELINE, enabled, evaluate, features
from tests.conftest import make_config

pytestmark = pytest.mark.stage

# Two clusters of two points: centroids (0, 1) and (4, 1), every point 1 from its centroid.
SQUARE = [("a", [0.0, 0.0], 0), ("b", [0.0, 2.0], 0), ("c", [4.0, 0.0], 1), ("d", [4.0, 2.0], 1)]


@pytest.fixture(scope="module")
def square(spark):
    return spark.createDataFrame(SQUARE, "user_id string, x array<float>, segment int")


def test_internal_metrics_by_hand(square):
    stats = m.cluster_stats(square, "x", "segment")
    assert stats.labels == [0, 1] and stats.sizes.tolist() == [2, 2]
    assert stats.centers.tolist() == [[0.0, 1.0], [4.0, 1.0]]
    assert stats.mean_distance.tolist() == [1.0, 1.0] and stats.sse.tolist() == [2.0, 2.0]
    # DB: (s0 + s1) / |c0 - c1| = 2 / 4. CH: between 2*4 + 2*4 = 16 over k-1 = 1,
    # within 4 * 1 = 4 over n-k = 2.
    assert m.davies_bouldin(stats) == pytest.approx(0.5)
    assert m.calinski_harabasz(stats) == pytest.approx(8.0)
    # (0, 0): a = 2 (to (0, 2)), b = (4 + sqrt(20)) / 2; the square is symmetric.
    b = (4 + math.sqrt(20)) / 2
    x, labels = m.sample_points(square, "x", "segment", 100, 4, seed=1)
    assert len(x) == 4 and sorted(labels.tolist()) == [0, 0, 1, 1]
    assert m.silhouette(x, labels) == pytest.approx((b - 2) / b)


@pytest.mark.parametrize("points", [300, 2500])  # one block of rows; seven, the last short
def test_silhouette_matches_scikit_learn(points):
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(3)
    x = rng.normal(size=(points, 4))
    labels = rng.integers(0, 4, points)
    labels[0] = 9  # a singleton cluster counts 0
    assert m.silhouette(x, labels) == pytest.approx(silhouette_score(x, labels), abs=1e-9)


def test_external_metrics_by_hand(spark):
    # labels x x x y y y, segments 1 1 0 0 0 0: table [[1, 2], [3, 0]].
    df = spark.createDataFrame(
        [("x", 1), ("x", 1), ("x", 0), ("y", 0), ("y", 0), ("y", 0), (None, 1)],
        "label string, segment int")
    table = m.contingency(df, "label", "segment")
    assert table.tolist() == [[1, 2], [3, 0]]
    scores = m.external_metrics(table)
    assert scores["acc"] == pytest.approx(5 / 6)  # x→1 (2 points) and y→0 (3 points)
    # ARI: Σ C(n_ij, 2) = 4, Σ C(a_i, 2) = 6, Σ C(b_j, 2) = 7, C(6, 2) = 15:
    # (4 - 6*7/15) / ((6 + 7)/2 - 6*7/15) = 1.2 / 3.7
    assert scores["ari"] == pytest.approx(1.2 / 3.7)
    mi = (math.log(0.5) / 6 + math.log(2) / 3 + math.log(1.5) / 2)
    h_label, h_segment = math.log(2), -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert scores["nmi"] == pytest.approx(mi / ((h_label + h_segment) / 2))


def test_external_metrics_match_scikit_learn_and_ignore_names():
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    rng = np.random.default_rng(5)
    truth, pred = rng.integers(0, 4, 500), rng.integers(0, 6, 500)
    table = np.zeros((4, 6), dtype=np.int64)
    np.add.at(table, (truth, pred), 1)
    assert m.ari(table) == pytest.approx(adjusted_rand_score(truth, pred))
    assert m.nmi(table) == pytest.approx(normalized_mutual_info_score(truth, pred))
    perfect = np.diag([3, 5, 2])[:, [2, 0, 1]]  # segments renamed
    assert (m.accuracy(perfect), m.nmi(perfect), m.ari(perfect)) == (1.0, 1.0, 1.0)


def test_choose_k_by_each_criterion():
    scores = {2: {"silhouette": 0.5, "davies_bouldin": 0.9, "calinski_harabasz": 80.0},
              3: {"silhouette": 0.6, "davies_bouldin": 0.7, "calinski_harabasz": 70.0},
              4: {"silhouette": 0.6, "davies_bouldin": 0.6, "calinski_harabasz": 60.0}}
    assert m.choose_k(scores, "silhouette") == 3  # tie with 4: the smaller k
    assert m.choose_k(scores, "davies_bouldin") == 4  # lower is better
    assert m.choose_k(scores, "calinski_harabasz") == 2


def blobs(n_per: int, centers, seed: int = 0, noise: float = 0.3):
    rng = np.random.default_rng(seed)
    rows = []
    for label, center in enumerate(centers):
        for i in range(n_per):
            rows.append((f"u{label}_{i}", (np.array(center) + rng.normal(0, noise, len(center)))
                         .astype(float).tolist(), label))
    return rows


def test_select_k_finds_three_blobs_and_plots(spark, tmp_path):
    df = spark.createDataFrame(blobs(20, [(0, 0), (6, 0), (0, 6)]),
                               "user_id string, embedding array<float>, truth int")
    vectors = with_vector(df).persist()
    chosen = select_k(vectors, [2, 3, 4], "davies_bouldin",
                      Segmenter("kmeans", 2, seed=1, max_iter=20, n_init=1), total=60,
                      sample_size=100, stability_runs=2, min_stability=0.8)
    assert chosen.model.k == 3
    assert chosen.best_by == {"silhouette": 3, "davies_bouldin": 3, "calinski_harabasz": 3,
                              "elbow": 3, "stability": 3}
    assert chosen.scores[3]["silhouette"] > chosen.scores[2]["silhouette"]
    # Each k fitted by scikit-learn on the sample (here every point), scored over every point:
    # within_ss is the sample fit's cost; three blobs come back from every bootstrap refit.
    assert chosen.scores[3]["within_ss"] == pytest.approx(chosen.scores[3]["cost"], rel=1e-4)
    assert chosen.scores[3]["stability"] == pytest.approx(1.0)
    assert chosen.seconds["stability"] > 0
    # The chosen k alone is fitted by MLlib over every point, as segment.k=3 would fit it.
    assert isinstance(chosen.models[3], MllibKMeans)
    assert not any(isinstance(chosen.models[k], MllibKMeans) for k in (2, 4))
    fixed = Segmenter("kmeans", 3, seed=1, max_iter=20, n_init=1).fit(vectors)
    assert np.allclose(chosen.model.centers, fixed.centers)
    path = tmp_path / "k.png"
    plot_k_selection(chosen, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_kmeans_starts_run_together_in_the_callers_job_group(spark):
    """The starts are fitted in threads: the best of them wins, as one start after another
    would give, and their Spark jobs carry the job group of the stage that asked."""
    vectors = with_vector(spark.createDataFrame(
        blobs(10, [(0, 0), (3, 0), (0, 3), (3, 3)]),
        "user_id string, embedding array<float>, truth int")).persist()
    each = [fit_kmeans(vectors, 3, seed, 10).summary.trainingCost for seed in (1, 2, 3)]
    context = spark.sparkContext
    context.setJobGroup("kmeans-starts", "three starts")
    try:
        best = fit_kmeans(vectors, 3, 1, 10, n_init=3)
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)
    assert best.summary.trainingCost == min(each)
    assert len(context.statusTracker().getJobIdsForGroup("kmeans-starts")) >= 3


def test_select_k_on_a_sample_assigns_every_point(spark):
    """Fitted on 30 of the 60 points (scikit-learn), scored and assigned over all 60."""
    rows = blobs(20, [(0, 0), (6, 0), (0, 6)])
    vectors = with_vector(spark.createDataFrame(
        rows, "user_id string, embedding array<float>, truth int")).persist()
    sample = np.array([x for _, x, _ in rows[::2]])
    chosen = select_k(vectors, [2, 3, 4], "silhouette",
                      Segmenter("kmeans", 2, seed=1, max_iter=20, n_init=2, sample_size=30),
                      total=60, sample_size=100, sample=sample)
    assert chosen.model.k == 3 and chosen.best_by["silhouette"] == 3
    assigned = chosen.model.transform(vectors).select("truth", "segment").distinct().collect()
    assert len(assigned) == 3  # each blob one segment, every point assigned
    assert chosen.scores[3]["cost"] == pytest.approx(
        sum(min(((np.array(x) - c) ** 2).sum() for c in chosen.model.centers)
            for x in sample))


def test_select_k_elbow_of_two_values_falls_back_to_silhouette(spark):
    rows = blobs(20, [(0, 0), (6, 0), (0, 6)])
    vectors = with_vector(spark.createDataFrame(
        rows, "user_id string, embedding array<float>, truth int")).persist()
    sample = np.array([x for _, x, _ in rows])
    segmenter = Segmenter("kmeans", 2, seed=1, max_iter=20, n_init=2, sample_size=60)
    lines = []
    chosen = select_k(vectors, [2, 3], "elbow", segmenter, total=60, sample_size=100,
                      sample=sample, log=lambda message, *args: lines.append(message % args))
    assert chosen.model.k == chosen.best_by["silhouette"] == chosen.best_by["elbow"] == 3
    assert [line for line in lines if "knee" in line] == [
        "elbow: no knee in the within-segment sum of squares over 2 value(s) of k (it needs 3 "
        "or more, on a bending curve): k chosen by silhouette"]
    assert "stability" not in chosen.scores[3]  # not measured without stability_runs
    with pytest.raises(PersonaError, match="stability needs segment.stability_runs >= 1"):
        select_k(vectors, [2, 3], "stability", segmenter, total=60, sample_size=100,
                 sample=sample)


def test_select_k_with_a_mixture(spark):
    """The Gaussian mixture fitted for each k on the points, scored and assigned in Spark."""
    rows = blobs(20, [(0, 0), (6, 0), (0, 6)])
    vectors = with_vector(spark.createDataFrame(
        rows, "user_id string, embedding array<float>, truth int")).persist()
    sample = np.array([x for _, x, _ in rows])
    mixture = Segmenter("gmm", 2, seed=1, max_iter=20, n_init=2, sample_size=60,
                        mixture=MixtureSpec())
    chosen = select_k(vectors, [2, 3, 4], "silhouette", mixture, total=60, sample_size=100,
                      sample=sample)
    assert isinstance(chosen.model, SampleMixture) and chosen.best_by["silhouette"] == 3
    assert chosen.best_by["elbow"] == 3  # within_ss from the segments, without a cost
    assert "cost" not in chosen.scores[3]  # a mixture is fitted by likelihood, not cost
    assigned = chosen.model.transform(vectors).groupBy("truth", "segment").count().collect()
    assert sorted(r["count"] for r in assigned) == [20, 20, 20]  # each blob one segment


def test_segments_assign_nearest_centres_and_count_the_empty_ones(spark):
    """Centres (0, 0), (10, 0) and (100, 100): the four points fall in the first two."""
    df = spark.createDataFrame([("a", [3.0, 4.0]), ("b", [0.0, 1.0]), ("c", [10.0, 2.0]),
                                ("d", [13.0, 4.0])], "user_id string, embedding array<double>")
    model = NearestCenters(np.array([[0.0, 0.0], [10.0, 0.0], [100.0, 100.0]]))
    assigned = model.transform(df)
    assert {r["user_id"]: (r["segment"], r["distance"]) for r in assigned.collect()} == {
        "a": (0, 5.0), "b": (0, 1.0), "c": (1, 2.0), "d": (1, 5.0)}
    sizes = segment_sizes(assigned)
    assert sizes == {0: 2, 1: 2}
    check_segments("segment.method=kmeans", 2, sizes)  # two asked, two made
    with pytest.raises(PersonaError) as error:
        check_segments("segment.method=gmm", 3, sizes)
    assert str(error.value) == ("segment.method=gmm made 2 non-empty segment(s) of the k=3 "
                                "asked for: use a smaller segment.k or another segment.method")


def test_segmenter_settings_survive_the_record():
    mixture = Segmenter("gmm", 7, seed=3, max_iter=20, n_init=2, sample_size=500,
                        mixture=MixtureSpec(covariance="full"))
    assert Segmenter.from_dict(mixture.to_dict()) == mixture
    kmeans = Segmenter("kmeans", 4, seed=3, max_iter=20, n_init=5)
    assert Segmenter.from_dict(kmeans.to_dict()) == kmeans


def test_segment_stops_when_it_makes_fewer_segments_than_asked(spark, tmp_path, capsys):
    """Six users on two distinct points: K-Means asked for 3 segments makes 2."""
    from persona.cli import main

    config = make_config(str(tmp_path), segment={"k": 3, "seed": 7, "max_iter": 10})
    lake = Lake(spark, config.path_of("lake.root"))
    points = [[0.0, 0.0]] * 3 + [[5.0, 5.0]] * 3
    lake.overwrite(spark.createDataFrame(
        [(f"u{i}", p, "enc1", "fs1") for i, p in enumerate(points)],
        "user_id string, embedding array<float>, model_version string, "
        "feature_set_version string"), "gold/user_embeddings")
    conf = tmp_path / "conf.yaml"
    conf.write_text(yaml.safe_dump(config.data))
    assert main(["segment", "--conf", str(conf)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert lines[-1] == ("persona: error: segment.method=kmeans made 2 non-empty segment(s) "
                         "of the k=3 asked for: use a smaller segment.k or another "
                         "segment.method")
    assert not lake.exists("gold/user_segments")


# --- bring-your-own features --------------------------------------------------------------

INPUT = [("id1", 1, 10.0, 0.5, "x", "cat"), ("id2", 2, None, 0.5, "y", "dog"),
         ("id3", 3, 30.0, 0.5, "x", "cow")]
INPUT_SCHEMA = "uid string, a int, b double, `c d` double, y string, note string"


def byo_config(tmp, path, **extra):
    return make_config(str(tmp), features={"input": {
        "path": str(path), "format": "parquet", "id_column": "uid", "label_column": "y",
        **extra}})


def test_features_input_builds_silver_and_labels(spark, tmp_path):
    path = tmp_path / "input.parquet"
    spark.createDataFrame(INPUT, INPUT_SCHEMA).write.parquet(str(path))
    config = byo_config(tmp_path, path)
    assert not enabled(PIPELINE["ingest"], config) and enabled(PIPELINE["features"], config)
    run_stage("features", features.run, config)
    lake = Lake(spark, config.path_of("lake.root"))
    raw = {Ids.of(config).value(u): u for u in ("id1", "id2", "id3")}  # the ids are hashed
    silver = {raw[r["user_id"]]: r for r in lake.read("silver/user_features").collect()}
    assert list(lake.read("silver/user_features").columns) == [
        "user_id", "a", "b", "c_d", "features", "feature_set_version", "as_of"]
    # a = 1, 2, 3 and b = 10, (missing → mean 20), 30: z = -1.2247, 0, 1.2247, each times
    # the group weight 1/sqrt(3); the constant c d scales to 0.
    z = math.sqrt(1.5) / math.sqrt(3)
    assert silver["id1"]["features"] == pytest.approx([-z, -z, 0.0], abs=1e-6)
    assert silver["id2"]["features"] == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert silver["id2"]["b"] == 20.0
    labels = {raw[r["user_id"]]: r["label"] for r in lake.read("silver/user_labels").collect()}
    assert labels == {"id1": "x", "id2": "y", "id3": "x"}
    version = silver["id1"]["feature_set_version"]
    run_stage("features", features.run, config)  # idempotent: same table, same version
    assert lake.read("silver/user_features").select("feature_set_version").distinct() \
        .collect()[0][0] == version


@pytest.mark.parametrize("ranges, bound", [
    ({"p1": (0, 255), "p2": (0, 255), "p3": (0, 90), "p4": (0, 0)}, 255),  # pixels
    ({"s1": (0, 0.4), "s2": (0, 1), "s3": (0.2, 0.7)}, 1),  # shares and one-hot
    ({"events": (1, 340), "spend": (0, 9120.5), "days": (0, 365)}, None),  # each its own
    ({"a": (1, 3), "b": (10, 30)}, None),  # half reach the top: not a majority
    ({"p1": (-1, 255), "p2": (0, 255)}, None),  # a negative value
    ({"z1": (0, 0), "z2": (0, 0)}, None),  # nothing but zeros
])
def test_one_scale_is_non_negative_values_most_of_which_reach_one_bound(ranges, bound):
    assert fi.one_scale(ranges) == bound


def test_features_input_on_one_scale_are_divided_by_its_bound(spark, tmp_path):
    """Pixel-like columns (three of four varying ones reach 4) become value / 4 under the
    default scale (auto), as an image benchmark prepares them; z-scores would blow up the
    rarely lit pixel."""
    rows = [("u1", 0, 4, 4, 0), ("u2", 4, 0, 2, 1), ("u3", 4, 4, 0, 0)]
    path = tmp_path / "pixels.parquet"
    spark.createDataFrame(rows, "uid string, p1 int, p2 int, p3 int, p4 int") \
        .write.parquet(str(path))
    config = make_config(str(tmp_path), features={"input": {
        "path": str(path), "format": "parquet", "id_column": "uid"}})
    run_stage("features", features.run, config)
    lake = Lake(spark, config.path_of("lake.root"))
    ids = Ids.of(config)
    got = {r["user_id"]: r["features"] for r in lake.read("silver/user_features").collect()}
    for uid, *pixels in rows:
        assert got[ids.value(uid)] == pytest.approx([v / 4 for v in pixels])


@pytest.mark.parametrize("extra, message", [
    ({"format": "xml"}, "features.input.format must be one of"),
    ({"scale": "log"}, "features.input.scale must be one of"),
    ({"id_column": None}, "features.input.id_column is missing"),
    ({"columns": "a"}, "features.input.columns must be a non-empty list"),
])
def test_features_input_settings_errors(tmp_path, extra, message):
    with pytest.raises(PersonaError, match=message):
        settings(byo_config(tmp_path, tmp_path / "x.parquet", **extra))


def test_features_input_column_errors(spark):
    df = spark.createDataFrame(INPUT, INPUT_SCHEMA)
    assert fi.feature_columns(df, "uid", "y", None) == ["a", "b", "c d"]
    with pytest.raises(PersonaError, match="id_column: column 'nope' not found"):
        fi.feature_columns(df, "nope", None, None)
    with pytest.raises(PersonaError, match=r"not numeric: note \(string\)"):
        fi.feature_columns(df, "uid", "y", ["a", "note"])
    assert fi.renamed(["c d", "7up"]) == {"c d": "c_d", "7up": "f7up"}
    with pytest.raises(PersonaError, match="'a b' and 'a_b' both become 'a_b'"):
        fi.renamed(["a b", "a_b"])
    with pytest.raises(PersonaError, match="reserves"):
        fi.renamed(["features"])


def test_features_input_rejects_duplicate_ids(spark, tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("uid,a\nu1,1\nu1,2\nu2,3\n")
    config = make_config(str(tmp_path), features={"input": {
        "path": str(path), "format": "csv", "id_column": "uid"}})
    with pytest.raises(PersonaError, match="'uid' has 1 duplicate value"):
        run_stage("features", features.run, config)


# --- the evaluate stage on a hand-built lake ------------------------------------------------

def test_evaluate_stage(spark, tmp_path):
    """Three separated blobs; the engine's segments put one user of blob 0 in segment 2, so
    its ACC is 59/60 while K-Means on the features recovers the blobs exactly."""
    rows = blobs(20, [(0, 0, 0, 0), (8, 0, 0, 0), (0, 8, 0, 0)], seed=2)
    config = make_config(str(tmp_path), evaluate={
        "truth": {"path": str(tmp_path / "truth.csv"), "label_column": "kind"},
        "stability_runs": 1, "sample": 100})
    lake = Lake(spark, config.path_of("lake.root"))
    pid = Ids.of(config).value  # the lake holds pseudonyms, truth.csv the raw ids
    lake.overwrite(spark.createDataFrame(
        [(pid(u), x, "fs1") for u, x, _ in rows],
        "user_id string, features array<float>, feature_set_version string"),
        "silver/user_features")
    lake.overwrite(spark.createDataFrame(
        [(pid(u), x[:2], "enc1", "fs1") for u, x, _ in rows],
        "user_id string, embedding array<float>, model_version string, "
        "feature_set_version string"), "gold/user_embeddings")
    segments = [(pid(u), 2 if u == "u0_0" else t, "seg1", "enc1") for u, _, t in rows]
    lake.overwrite(spark.createDataFrame(
        segments, "user_id string, segment int, model_version string, encoder_version string"),
        "gold/user_segments")
    (tmp_path / "truth.csv").write_text(
        "user_id,kind\n" + "".join(f"{u},{'abc'[t]}\n" for u, _, t in rows))

    result = run_stage("evaluate", evaluate.run, config)
    assert result["persona.acc"] == pytest.approx(59 / 60)
    assert result["persona.labelled_users"] == 60
    assert result["raw_kmeans.acc"] == 1.0 and result["raw_kmeans.ari"] == 1.0
    assert result["pca_kmeans.acc"] == 1.0
    assert result["persona.ari"] < 1.0 and result["persona.nmi"] < 1.0
    # K-Means refitted on bootstrap samples finds the blobs, not the misplaced user.
    assert result["raw_kmeans.stability.ari_mean"] == 1.0
    assert result["persona.stability.ari_mean"] < 1.0
    assert result["persona.features.silhouette"] < result["raw_kmeans.features.silhouette"]
    quality = lake.read("gold/segment_quality")
    assert quality.where((F.col("method") == "persona") & (F.col("metric") == "acc")) \
        .first()["value"] == pytest.approx(59 / 60)
    assert quality.select("method").distinct().count() == 3
    assert {r["space"] for r in quality.where(F.col("method") == "pca_kmeans").collect()} == {
        "own", "features", "labels", "stability", "time"}


def test_evaluate_needs_a_known_encoder(spark, tmp_path):
    config = make_config(str(tmp_path))
    lake = Lake(spark, config.path_of("lake.root"))
    lake.overwrite(spark.createDataFrame([("u1", [1.0], "fs1")],
                                         "user_id string, features array<float>, "
                                         "feature_set_version string"), "silver/user_features")
    lake.overwrite(spark.createDataFrame([("u1", 0, "seg1", "lost")],
                                         "user_id string, segment int, model_version string, "
                                         "encoder_version string"), "gold/user_segments")
    with pytest.raises(PersonaError, match="assigned with encoder lost"):
        run_stage("evaluate", evaluate.run, config)
