"""dags/persona_pipeline.py beside the engine (its run in Airflow is in tests/integration)."""
import ast
import os

import pytest

from persona.stages import PIPELINE

pytestmark = pytest.mark.unit


def test_airflow_dag_runs_the_pipeline_stages_in_order():
    """The DAG cannot import Persona in the scheduler, so it writes the stages out."""
    path = os.path.join(os.path.dirname(__file__), "..", "dags", "persona_pipeline.py")
    with open(path, encoding="utf-8") as fh:
        module = ast.parse(fh.read())
    (stages,) = [ast.literal_eval(node.value) for node in module.body
                 if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["STAGES"]]
    assert list(stages) == list(PIPELINE) == ["ingest", "features", "train", "embed", "segment",
                                              "tag"]
