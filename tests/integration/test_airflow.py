"""dags/persona_pipeline.py in Airflow's own virtualenv: it imports cleanly and cheaply, and
``airflow dags test`` runs its jobs (ingest, update, tag) with spark-submit for the run's
logical date; the first update, with no models in use, trains them."""
import json
import subprocess
import time

import pytest

from tests.integration.conftest import (AIRFLOW_BIN, BIN, CLUSTER_CONF, DIST, JARS, ROOT, TIMINGS,
                                        job_env, lake_settings, lake_summary, require_package,
                                        run_logged, tail)

DAG_ID = "persona_pipeline"
LOGICAL_DATE = "2025-02-01"
STAGES = ["ingest", "update", "tag"]
TIMEOUT = 1800

# Runs in Airflow's virtualenv: parse the dags folder and describe what came out.
INSPECT = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
before = set(sys.modules)
bag = DagBag(dag_folder=sys.argv[1])
dag = bag.dags.get("persona_pipeline")
print(json.dumps({
    "errors": {k: str(v) for k, v in bag.import_errors.items()},
    "parse_seconds": sum(s.duration.total_seconds() for s in bag.dagbag_stats),
    "imported": sorted({m.split(".")[0] for m in set(sys.modules) - before}),
    "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "retries": t.retries,
                          "backoff": t.retry_exponential_backoff,
                          "operator": [c.__name__ for c in type(t).__mro__]}
              for t in dag.tasks} if dag else {},
    "params": sorted(dag.params) if dag else [],
    "max_active_runs": dag.max_active_runs if dag else None,
}))
"""


def airflow_env(home) -> dict:
    """Airflow with its state in ``home``, the Spark connection from an environment variable,
    and the jobs' virtualenv first on PATH (its spark-submit)."""
    env = job_env()
    env.update(AIRFLOW_HOME=str(home), AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__DAGS_FOLDER=str(ROOT / "dags"),
               AIRFLOW_CONN_PERSONA_SPARK=json.dumps({"conn_type": "spark", "host": "local[2]"}))
    return env


def airflow(args: list[str], env: dict, log, timeout: float = 300) -> None:
    """``airflow ARGS`` in its own process group, killed if it outlives ``timeout``; its
    output is appended to ``log``."""
    code = run_logged([str(AIRFLOW_BIN / "airflow"), *args], env, log, timeout)
    if code != 0:
        pytest.fail(f"airflow {' '.join(args[:3])}: "
                    f"{'timed out' if code is None else f'exit code {code}'}\n{tail(log, 60)}")


@pytest.fixture(scope="module")
def home(work):
    if not (AIRFLOW_BIN / "airflow").exists():
        pytest.fail("Airflow's virtualenv is missing: run `make airflow` "
                    "(make test-integration does)")
    folder = work / "airflow"
    folder.mkdir()
    return folder


def test_dag_imports_without_errors_or_heavy_work(home):
    result = subprocess.run([str(AIRFLOW_BIN / "python"), "-c", INSPECT, str(ROOT / "dags")],
                            capture_output=True, text=True, env=airflow_env(home), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    dag = json.loads(result.stdout.strip().splitlines()[-1])
    assert dag["errors"] == {}
    assert list(dag["tasks"]) == STAGES
    for upstream, stage in zip([None, *STAGES], STAGES):
        task = dag["tasks"][stage]
        assert task["upstream"] == ([upstream] if upstream else [])
        assert task["retries"] == 3 and task["backoff"] == 2.0
        assert "SparkSubmitOperator" in task["operator"]
    assert {"conn_id", "config"} <= set(dag["params"])
    assert dag["max_active_runs"] == 1
    # Parsing imports Airflow only: no Spark, TensorFlow, MLflow or Persona in the scheduler.
    assert not {"pyspark", "tensorflow", "mlflow", "persona", "horovod"} & set(dag["imported"])
    assert dag["parse_seconds"] < 2


def test_dags_test_runs_every_job_for_the_logical_date(home, data, mlflow_server):
    require_package()
    env = airflow_env(home)
    log = home / "airflow.log"
    airflow(["db", "migrate"], env, log)
    conf = {
        "conn_id": "persona_spark",
        "config": str(CLUSTER_CONF),
        "persona_home": str(DIST),
        "python": str(BIN / "python"),
        "packages": "",
        "jars": ",".join(map(str, JARS)),
        "spark_conf": {"spark.sql.shuffle.partitions": "4", "spark.ui.enabled": "false",
                       "spark.driver.memory": "2g"},
        "overrides": lake_settings(home, data, mlflow_server, "persona-airflow",
                                   "persona-airflow"),
    }
    start = time.time()
    airflow(["dags", "test", DAG_ID, LOGICAL_DATE, "-c", json.dumps(conf)], env, log, TIMEOUT)
    TIMINGS[f"airflow dags test {DAG_ID} {LOGICAL_DATE} ({len(STAGES)} spark-submits, "
            f"local[2])"] = \
        time.time() - start
    submitted = [line for line in log.read_text(errors="replace").splitlines()
                 if "Spark-Submit cmd:" in line]
    assert len(submitted) == len(STAGES)
    assert all(f"features.as_of={LOGICAL_DATE}T00:00:00+00:00" in line for line in submitted)

    listed = subprocess.run([str(AIRFLOW_BIN / "airflow"), "dags", "list-runs", DAG_ID,
                             "-o", "json"], capture_output=True, text=True, env=env, timeout=300)
    runs = json.loads(listed.stdout[listed.stdout.index("["):])
    assert [r["state"] for r in runs] == ["success"]
    assert runs[0]["logical_date"].startswith(LOGICAL_DATE)

    (lake,) = lake_summary(home / "lake")
    assert lake["as_of"] == [f"{LOGICAL_DATE} 00:00:00"]
    users = lake["tables"]["silver/user_features"]
    # Only users with events up to the logical date have features and segments.
    assert users == lake["users_with_events_as_of"] < lake["users_with_events"]
    assert lake["tables"]["gold/user_segments"] == users == len(lake["segments"])
    assert len(set(lake["segments"].values())) == 5
