"""The run summary: the segments that have users, and where to open the MLflow runs."""
import pytest

from persona.pipeline import mlflow_hint, summary_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("uri, hint", [
    ("sqlite:////work/out/mlflow.db",
     "make mlflow-ui  → http://127.0.0.1:5000  (sqlite:////work/out/mlflow.db)"),
    ("file:///work/out/mlruns",
     "make mlflow-ui  → http://127.0.0.1:5000  (file:///work/out/mlruns)"),
    ("https://mlflow.example.com", "https://mlflow.example.com"),
    ("databricks", "databricks"),
])
def test_mlflow_hint_names_the_local_ui_only_for_a_local_store(uri, hint):
    assert mlflow_hint(uri) == hint


def test_summary_counts_the_segments_present():
    profiles = [
        {"segment": 0, "size": 30, "share": 0.75, "description": "high spend (200 vs 100)"},
        {"segment": 1, "size": 10, "share": 0.25, "description": "low spend (20 vs 100)"},
        {"segment": 2, "size": 0, "share": 0.0, "description": ""},
    ]
    text = summary_text(profiles, {"segment": 12.4}, "/lake", "http://mlflow:5000", 1)
    lines = text.splitlines()
    assert lines[1] == "Persona: 40 users in 2 segments"
    assert lines[3] == "  segment  0        30 users ( 75.0%)  high spend (200 vs 100)"
    assert lines[4] == "  segment  1        10 users ( 25.0%)  low spend (20 vs 100)"
    assert "segment  2" not in text
    assert "  stage times: segment 12s" in lines
    assert "  MLflow:      http://mlflow:5000" in lines
    assert "127.0.0.1" not in text


def test_summary_leaves_out_segments_below_the_minimum_size():
    profiles = [
        {"segment": 0, "size": 60, "share": 0.83, "description": "high spend (200 vs 100)"},
        {"segment": 4, "size": 12, "share": 0.17, "description": "low spend (20 vs 100)"},
    ]
    text = summary_text(profiles, {"segment": 1.0}, "/lake", "http://mlflow:5000", 50)
    assert "  segment 4: 12 users, below privacy.min_segment_size 50, not shown" in text
    assert "low spend" not in text and "high spend" in text
