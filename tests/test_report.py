"""The HTML report: its pictures and page on hand-made data, then the end-to-end run's report
rendered in headless Chromium (Debian's chromium package)."""
import base64
import io
import os
import re
import shutil
import subprocess

import mlflow
import numpy as np
import pytest
from PIL import Image

from persona.report import charts
from persona.report.page import Page, SegmentCard, TagCard, render
from persona.runtime.tracking import tracking_uri
from persona.stages.report import REPORT, highlighted, top_features

pytestmark = pytest.mark.e2e

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def decode(uri: str) -> Image.Image:
    assert uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    image.load()
    return image


def test_top_features_take_each_segments_strongest():
    profiles = [{"feature_z": {"a": 2.0, "b": -1.5, "c": 0.2, "d": 0.1, "text_1": 9.0}},
                {"feature_z": {"a": 0.1, "c": -3.0, "d": 0.5, "e": 0.4}}]
    assert top_features(profiles, per_segment=2) == ["c", "a", "b", "d"]
    assert top_features(profiles, per_segment=2, limit=2) == ["c", "a"]


def test_highlights_carry_their_standardised_difference():
    # Ranked by |z|, learned text dimensions left out: b (-2.5), then a (+1.2).
    profile = {"highlights": ["weekend share 10% vs 30% overall (-2.5 sd)",
                              "spend 200 vs 100 overall (+1.2 sd)"],
               "feature_z": {"a": 1.2, "b": -2.5, "c": 0.3, "text_0": 9.0}}
    assert highlighted(profile) == [("weekend share 10% vs 30% overall (-2.5 sd)", -2.5),
                                    ("spend 200 vs 100 overall (+1.2 sd)", 1.2)]
    assert highlighted({"highlights": None, "feature_z": None}) == []


def test_pca_puts_the_main_direction_first():
    t = np.linspace(-1, 1, 21)
    points = np.stack([t, 2 * t, np.zeros_like(t)], axis=1) + [5.0, 1.0, 3.0]
    projected = charts.pca_2d(points)
    assert np.allclose(projected[:, 1], 0.0, atol=1e-9)
    assert np.allclose(np.abs(projected[:, 0]), np.abs(t) * np.sqrt(5))


def test_every_chart_is_a_png():
    images = [
        charts.sizes_chart([0, 1, 2], ["weekend", "high spend", "lapsed"], [50, 30, 20]),
        charts.heatmap_chart(["weekend", "lapsed"], ["weekend share", "spend"],
                             np.array([[1.5, -0.2], [-0.3, np.nan]]),
                             [["61%", "40"], ["10%", "–"]]),
        charts.projection_chart(np.random.default_rng(0).normal(size=(40, 2)),
                                np.array([0, 1] * 20), {0: "weekend", 1: "lapsed"}),
        charts.confusion_chart({"DNN": [[5, 1], [2, 4]], "logistic regression": [[4, 2], [1, 5]]},
                               ["no", "yes"]),
        charts.scores_chart(["churn", "plan"], {"DNN": [0.7, 0.4], "majority class": [0, 0.2]},
                            "F1"),
        charts.values_chart(["no", "yes"], [70, 30]),
    ]
    for uri in images:
        width, height = decode(uri).size
        assert width > 200 and height > 100


def _page(names):
    uri = charts.values_chart(["a"], [1])
    cards = [SegmentCard(i, n, 10 * (i + 1), 0.1, charts.colour(i), [("spend 10 vs 5", 1.2)],
                         [{"rule": "spend > 8", "users": 9, "coverage": 0.9, "precision": 0.8}],
                         0.75) for i, n in enumerate(names)]
    tag = TagCard("churn", "churn: no purchase", [
        {"model": "DNN", "accuracy": 0.8, "precision": 0.7, "recall": 0.6, "f1": 0.65,
         "roc_auc": 0.85, "threshold": 0.4},
        {"model": "majority class", "accuracy": 0.6, "precision": 0.0, "recall": 0.0,
         "f1": 0.0, "roc_auc": None, "threshold": None}], uri, uri, "note")
    return Page("Persona", "sub", [("users", "30")], {k: uri for k in
                ("sizes", "projection", "heatmap", "scores")}, cards, [tag], 0.9, "footer")


def test_page_shows_every_segment_and_escapes_text():
    html = render(_page(["weekend, <b>sports</b>", "high spend"]))
    assert html.count('<article class="card"') == 2
    assert "weekend, &lt;b&gt;sports&lt;/b&gt;" in html and "<b>sports</b>" not in html
    assert 'data-tag="churn"' in html and "0.650" in html
    assert "agrees with the segments for 90%" in html
    text = re.sub(r"data:image/png;base64,[^\"]+", "", html)
    assert "http" not in text and "src=\"/" not in text  # self-contained: nothing to fetch


@pytest.fixture(scope="module")
def report(generated):
    """The session's end-to-end run (:mod:`tests.runs`): its configuration, lake, the report
    stage's metrics and the page."""
    lake = generated.lake
    return generated.config, lake, generated.report, os.path.join(lake.root, REPORT)


def test_report_is_in_the_lake_and_in_mlflow(report):
    config, lake, metrics, path = report
    html = open(path, encoding="utf-8").read()
    profiles = lake.read("gold/segment_profiles").collect()
    assert metrics["segments"] == len(profiles)
    assert metrics["tags"] == 2
    uris = re.findall(r'src="(data:image/png;base64,[^"]+)"', html)
    assert len(uris) == 4 + 2 * 2  # sizes, map, heatmap, F1; per tag confusion and values
    for uri in uris:
        decode(uri)
    mlflow.set_tracking_uri(tracking_uri(config))
    run = mlflow.search_runs(experiment_names=[config.get("mlflow.experiment")],
                             filter_string="tags.`persona.stage` = 'report'",
                             output_format="list")[0]
    logged = mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/persona_report.html")
    assert logged == html


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium package is not installed "
                                             "(apt-get install -y chromium)")
def test_report_renders_in_headless_chromium_with_every_segment(report, tmp_path):
    _, lake, _, path = report
    profile = str(tmp_path / "chromium-profile")
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                          "--dump-dom", f"file://{path}"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    profiles = lake.read("gold/segment_profiles").collect()
    assert dom.count('<article class="card"') == len(profiles)
    for p in profiles:
        assert f'data-segment="{p["segment"]}"' in dom
        assert p["name"].replace("&", "&amp;") in dom
    assert dom.count('class="panel tag"') == 2
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                    "--window-size=1280,4000", f"--screenshot={shot}", f"file://{path}"],
                   capture_output=True, timeout=120, check=True)
    image = Image.open(shot).convert("RGB")
    assert image.size == (1280, 4000)
    colours = image.resize((320, 1000)).getcolors(maxcolors=1 << 20)
    assert len(colours) > 500  # pictures, not a blank page
