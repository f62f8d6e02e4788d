"""The choice of k: each criterion's rule on hand-made curves worked out by hand, bootstrap
stability on tiny data, the plot of every curve and its place in the report."""
import numpy as np
import pytest

from persona.report.page import Page, render
from persona.segmentation import metrics as m
from persona.segmentation.models import (KSelection, NearestCenters, Segmenter,
                                         plot_k_selection)

pytestmark = pytest.mark.unit

# within_ss over k = 2..6.
CURVE = {2: 100.0, 3: 40.0, 4: 30.0, 5: 25.0, 6: 22.0}


def test_knee_of_a_falling_curve_by_hand():
    # k scaled: 0, .25, .5, .75, 1; values (w - 22) / 78: 1, .231, .103, .038, 0; the chord
    # from (0, 1) to (1, 0) is 1 - x: 1, .75, .5, .25, 0; below it: 0, .519, .397, .212, 0.
    assert m.knee(CURVE) == 3
    # A slow start, then a drop: k = 2..7, [100, 80, 60, 30, 25, 22]. Scaled: x = 0, .2, .4,
    # .6, .8, 1; y = 1, .744, .487, .103, .038, 0; below 1 - x: 0, .056, .113, .297, .162, 0.
    assert m.knee({2: 100.0, 3: 80.0, 4: 60.0, 5: 30.0, 6: 25.0, 7: 22.0}) == 5


def test_no_knee_without_three_points_or_a_bend():
    assert m.knee({2: 100.0, 3: 40.0}) is None
    assert m.knee({2: 5.0, 3: 5.0, 4: 5.0}) is None
    # Bends the other way, y = 1, .974, .923, .744, 0: every point above the chord 1 - x.
    assert m.knee({2: 100.0, 3: 98.0, 4: 94.0, 5: 80.0, 6: 22.0}) is None
    assert m.knee({2: 10.0, 3: 6.0, 4: 2.0}) is None  # a straight line


def test_stable_k_is_the_largest_k_stable_up_to_it():
    # 5 is stable again, but 4 is not: 3.
    assert m.stable_k({2: 0.95, 3: 0.9, 4: 0.6, 5: 0.85}, 0.8) == 3
    assert m.stable_k({2: 0.95, 3: 0.9, 4: 0.8}, 0.8) == 4  # at the threshold counts
    # The smallest k falls short: the most stable k (ties: the smaller).
    assert m.stable_k({2: 0.5, 3: 0.9, 4: 0.9, 5: 0.7}, 0.8) == 3


SCORES = {2: {"silhouette": 0.5, "davies_bouldin": 0.9, "calinski_harabasz": 80.0,
              "within_ss": 100.0, "stability": 0.95},
          3: {"silhouette": 0.4, "davies_bouldin": 0.7, "calinski_harabasz": 70.0,
              "within_ss": 40.0, "stability": 0.9},
          4: {"silhouette": 0.3, "davies_bouldin": 0.6, "calinski_harabasz": 90.0,
              "within_ss": 30.0, "stability": 0.85},
          5: {"silhouette": 0.2, "davies_bouldin": 0.8, "calinski_harabasz": 60.0,
              "within_ss": 25.0, "stability": 0.7}}


def test_choose_k_by_each_criterion_from_its_curve():
    assert m.choose_k(SCORES, "silhouette") == 2
    assert m.choose_k(SCORES, "davies_bouldin") == 4  # lower is better
    assert m.choose_k(SCORES, "calinski_harabasz") == 4
    # within_ss 100, 40, 30, 25 over k = 2..5: y = 1, .2, .067, 0 below 1 - x = 1, .667,
    # .333, 0: 0, .467, .267, 0.
    assert m.choose_k(SCORES, "elbow") == 3
    assert m.choose_k(SCORES, "stability", min_stability=0.8) == 4  # 5 falls to 0.7
    assert m.choose_k(SCORES, "stability", min_stability=0.92) == 2
    with pytest.raises(ValueError, match="min_stability"):
        m.choose_k(SCORES, "stability")
    with pytest.raises(ValueError, match="unknown criterion"):
        m.choose_k(SCORES, "gap")
    assert set(m.CRITERIA) == {"silhouette", "davies_bouldin", "calinski_harabasz", "elbow",
                               "stability"}


def test_elbow_falls_back_to_silhouette_without_a_knee():
    two = {k: SCORES[k] for k in (2, 3)}  # two values of k: no knee
    assert m.KNEE_FALLBACK == "silhouette"
    assert m.choose_k(two, "elbow") == m.choose_k(two, "silhouette") == 2
    straight = {k: {**SCORES[k], "within_ss": 100.0 - 10 * k} for k in SCORES}
    assert m.choose_k(straight, "elbow") == 2


class Fixed:
    """A fitted model that gives every point the same labels, whatever it was fitted on."""

    def __init__(self, labels):
        self.labels = np.array(labels)

    def predict(self, points):
        return self.labels


def test_bootstrap_stability_is_the_mean_ari_of_the_refits():
    points = np.zeros((6, 1))
    labels = np.array([1, 1, 0, 0, 0, 0])
    seen = []

    def fit(resample, run):
        seen.append((len(resample), run))
        return Fixed([5, 5, 7, 7, 7, 7] if run == 0 else [0, 1, 1, 1, 1, 0])

    # Run 0: the same partition renamed, ARI 1. Run 1: table [[1, 3], [1, 1]] (labels 0, 1 by
    # refit 0, 1): sum C(n_ij, 2) = 3, C(a_i, 2): 6 + 1 = 7, C(b_j, 2): 1 + 6 = 7, C(6, 2) =
    # 15: (3 - 7 * 7 / 15) / ((7 + 7) / 2 - 7 * 7 / 15) = -4 / 56 = -1 / 14.
    assert m.bootstrap_stability(points, labels, fit, runs=2, seed=0) == pytest.approx(
        (1 - 1 / 14) / 2)
    assert seen == [(6, 0), (6, 1)]  # each refit sees a resample as large as the points


def test_stability_picks_the_three_blobs_that_four_segments_split_unstably():
    """Three round blobs of 60 points on a line at 0, 10 and 30: two segments merge the
    near pair, three find the blobs, whatever the resample (ARI 1); four split one round
    blob along a direction (and sometimes another blob) that changes with the resample."""
    rng = np.random.default_rng(0)
    angle, radius = rng.uniform(0, 2 * np.pi, 60), np.sqrt(rng.uniform(0, 1, 60))
    disc = np.stack([radius * np.cos(angle), radius * np.sin(angle)], axis=1)
    points = np.concatenate([disc + [x, 0.0] for x in (0.0, 10.0, 30.0)])
    segmenter = Segmenter("kmeans", 2, seed=1, max_iter=50, n_init=3)
    curve = {}
    for k in (2, 3, 4):
        fitted = Segmenter("kmeans", k, seed=1, max_iter=50, n_init=3).fit_points(points)
        curve[k] = m.bootstrap_stability(
            points, fitted.predict(points),
            lambda resample, run, k=k: Segmenter(
                segmenter.method, k, seed=100 + run, max_iter=50, n_init=3).fit_points(resample),
            runs=4, seed=3)
    assert curve[2] == pytest.approx(1.0) and curve[3] == pytest.approx(1.0)
    assert curve[4] < 0.9
    assert m.stable_k(curve, 0.9) == 3


def test_segments_predict_the_nearest_centre():
    model = NearestCenters(np.array([[0.0, 0.0], [10.0, 0.0]]))
    # (4, 3) is 5 from the first centre and sqrt(36 + 9) from the second.
    assert model.predict(np.array([[4.0, 3.0], [6.0, 0.0], [-1.0, 9.0]])).tolist() == [0, 1, 0]


def selection() -> KSelection:
    return KSelection({k: NearestCenters(np.zeros((k, 2))) for k in SCORES}, "elbow", SCORES,
                      {c: m.choose_k(SCORES, c, 0.8) for c in m.CRITERIA}, 0.8,
                      {"scores": 1.0, "stability": 2.0})


def test_every_criterion_is_plotted(tmp_path):
    path = tmp_path / "k.png"
    plot_k_selection(selection(), str(path))
    from PIL import Image

    image = Image.open(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.size[1] > image.size[0] / 3  # five panels in two rows, not one long strip


def test_the_report_shows_the_choice_of_k():
    page = Page("t", "s", [], {"sizes": "", "projection": "", "heatmap": "",
                               "k_selection": "data:image/png;base64,AAAA"}, [],
                k_selection={"criterion": "elbow", "chosen": 3,
                             "best_by": {"silhouette": 2, "elbow": 3}})
    html = render(page)
    assert "How many segments" in html and "data:image/png;base64,AAAA" in html
    assert "k = 3, chosen by elbow" in html and "silhouette 2" in html
    assert "How many segments" not in render(Page("t", "s", [], {
        "sizes": "", "projection": "", "heatmap": ""}, []))
