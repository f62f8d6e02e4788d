"""docs/results.md is rendered from the benchmarks' JSON runs: the committed page must be what
the renderer makes of the committed JSON, and a run's record carries its provenance."""
import importlib.util
import json
import os

import pytest

pytestmark = pytest.mark.unit

ROOT = os.path.join(os.path.dirname(__file__), "..")


def load_module(name: str):
    spec = importlib.util.spec_from_file_location(
        f"benchmarks_{name}", os.path.join(ROOT, "benchmarks", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render = load_module("render")
record = load_module("record")


def test_results_page_is_rendered_from_the_committed_json():
    with open(os.path.join(ROOT, "docs", "results.md"), encoding="utf-8") as fh:
        page = fh.read()
    assert page == render.render(render.load()), \
        "docs/results.md is stale: run .venv/bin/python benchmarks/render.py"


def test_a_run_is_rendered_with_its_provenance_and_cells():
    run = {"benchmark": "groups", "date": "2026-01-02T03:04:05Z", "commit": "0123456789abcdef",
           "uncommitted_changes": True, "command": ".venv/bin/python benchmarks/groups.py",
           "cores": 2, "seconds": 61.25,
           "tables": [{"title": "ARI", "columns": ["groups", "users", "ARI", "AE"],
                       "rows": [["base", 20000, 0.77149, [0.8, 0.0361]]]}]}
    page = render.render([run])
    section = page.split("## Which feature groups help")[1]
    assert ("### 2026-01-02T03:04:05Z\n\n"
            "Commit 0123456789 with uncommitted changes; 2 cores; 61 s in all.\n\n"
            "```bash\n.venv/bin/python benchmarks/groups.py\n```\n\n"
            "**ARI**\n\n| groups | users | ARI | AE |\n|---|---|---|---|\n"
            "| base | 20,000 | 0.771 | 0.800 ± 0.036 |\n") in section
    # Sections without a run say so, and say which command fills them.
    assert page.count("No run recorded in this checkout yet.") == len(render.SECTIONS) - 1
    assert "benchmarks/clustering.py --datasets digits mnist" in page


def test_an_unknown_benchmark_is_refused():
    with pytest.raises(SystemExit, match="no section for benchmark"):
        render.render([{"benchmark": "speed", "date": "", "tables": []}])


def test_a_written_run_records_date_commit_command_and_cores(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", [os.path.join(ROOT, "benchmarks", "groups.py"), "--seeds",
                                     "1"])
    table = {"title": "t", "columns": ["a"], "rows": [[1.5]]}
    path = record.write_result("groups", [table], 12.34, {"seeds": 1}, out=str(tmp_path))
    with open(path, encoding="utf-8") as fh:
        written = json.load(fh)
    assert written["benchmark"] == "groups"
    assert written["command"] == ".venv/bin/python benchmarks/groups.py --seeds 1"
    assert written["cores"] == os.cpu_count()
    assert len(written["commit"]) == 40
    assert written["date"].endswith("Z") and written["seconds"] == 12.3
    assert written["tables"] == [table] and written["figures"] == {"seeds": 1}
    assert os.path.basename(path).startswith("groups-")
    assert "| 1.500 |" in render.render(render.load(str(tmp_path)))
