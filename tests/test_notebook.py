"""The exploration notebook, executed on the end-to-end run's lake so that it cannot rot."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.e2e

NOTEBOOK = os.path.join(os.path.dirname(__file__), "..", "notebooks", "explore_run.ipynb")


def test_notebook_runs_on_a_pipeline_output(generated, monkeypatch):
    lake = generated.lake
    monkeypatch.setenv("PERSONA_LAKE", lake.root)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 6  # sizes, heatmap, spread, F1, and one per tag by segment
    text = "\n".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    profiles = lake.read("gold/segment_profiles").collect()
    assert f"in {len(profiles)} segments" in text
    for p in profiles:
        assert p["name"] in text
