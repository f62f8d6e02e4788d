"""dags/persona_pipeline.py beside the engine (its run in Airflow is in tests/integration)."""
import ast
import os

import pytest

from persona.cli import build_parser

ROOT = os.path.join(os.path.dirname(__file__), "..")

pytestmark = pytest.mark.unit


def test_airflow_dag_runs_ingest_update_and_tag_daily():
    """The DAG cannot import Persona in the scheduler, so it writes its jobs out: each is a
    persona command with a spark-submit entry point, and the update retrains when due."""
    path = os.path.join(ROOT, "dags", "persona_pipeline.py")
    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    (stages,) = [ast.literal_eval(node.value) for node in ast.parse(text).body
                 if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["STAGES"]]
    assert list(stages) == ["ingest", "update", "tag"]
    commands = build_parser()._subparsers._group_actions[0].choices
    for stage in stages:
        assert stage in commands
        assert os.path.exists(os.path.join(ROOT, "jobs", f"{stage}.py"))
    assert '"retrain.auto={{ params.retrain | lower }}"' in text
