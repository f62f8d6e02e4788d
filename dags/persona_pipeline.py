"""Persona in Airflow: the daily run, one spark-submit per job, the run's logical date as
``features.as_of``.

A run for logical date D ingests what is new, then ``persona update`` brings the features,
embeddings and segments up to D with the models in use, and the tags are assigned. The
update itself is the branch that retrains: with ``retrain.auto`` on (the ``retrain`` param)
it runs features, train, embed and segment when the retraining policy (``retrain.*``) says
retraining is due, and on the first run, when no models are in use yet; otherwise it trains
nothing. ``airflow backfill create --dag-id persona_pipeline --from-date ... --to-date ...``
brings past dates' segments forward one run at a time (every run writes the same lake
tables, and Delta keeps each run's version for time travel).

Params (defaults from the scheduler's environment, overridable per run with ``--conf``):
``conn_id`` (the Spark connection: master and deploy mode), ``config`` (the job's YAML),
``persona_home`` (what ``make package`` builds: ``jobs/``, ``conf/``, ``persona.zip``),
``python`` (the jobs' interpreter on the cluster), ``packages``/``jars`` (Delta Lake's JVM
half), ``spark_conf`` (spark-submit ``--conf`` settings), ``overrides`` (``key=value``
strings passed to every job as ``--set``), ``retrain`` (``retrain.auto`` of the update).

Parsing this file imports only Airflow: the jobs' packages live on the cluster, and the
retraining decision is taken where they are, inside the update job.
"""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param

# The daily jobs, in order (persona commands, checked by the tests), written out: the
# scheduler cannot import Persona. With no tags configured, the tag job says so and succeeds.
STAGES = ("ingest", "update", "tag")
PERSONA_HOME = os.environ.get("PERSONA_HOME", "/opt/persona")
DELTA_PACKAGE = "io.delta:delta-spark_2.12:3.3.2"
# The run's logical date (a manually triggered run without one: when it was queued).
AS_OF = "{{ (logical_date or dag_run.run_after).isoformat() }}"


class StageSubmit(SparkSubmitOperator):
    """spark-submit of ``jobs/<stage>.py``: the Spark connection is the run's ``conn_id``
    param, ``spark_conf`` adds ``--conf`` settings, ``overrides`` adds ``--set`` arguments."""

    def __init__(self, *, stage: str, extra_args: tuple[str, ...] = (), **kwargs):
        super().__init__(
            task_id=stage,
            name=f"persona-{stage}",
            application=f"{{{{ params.persona_home }}}}/jobs/{stage}.py",
            py_files="{{ params.persona_home }}/persona.zip",
            conf={"spark.driver.extraJavaOptions": "-Dlog4j.configurationFile="
                  "file:{{ params.persona_home }}/conf/log4j2.properties"},
            packages="{{ params.packages }}",
            jars="{{ params.jars }}",
            env_vars={"PYSPARK_PYTHON": "{{ params.python }}",
                      "PYSPARK_DRIVER_PYTHON": "{{ params.python }}"},
            application_args=["--conf", "{{ params.config }}",
                              "--set", f"features.as_of={AS_OF}", *extra_args],
            **kwargs,
        )

    def execute(self, context):
        params = context["params"]
        self._conn_id = params["conn_id"]
        self.conf = {**(self.conf or {}), **params["spark_conf"]}
        self.application_args = [*self.application_args,
                                 *[arg for item in params["overrides"] for arg in ("--set", item)]]
        return super().execute(context)


with DAG(
    dag_id="persona_pipeline",
    description="New raw user data → Delta → features, embeddings and segments brought "
                "forward (retrained by Horovod when due) → profile tags",
    schedule="@daily",
    start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=2),
        "retry_exponential_backoff": 2.0,  # waits 2, 4, 8 minutes
        "max_retry_delay": timedelta(minutes=30),
        "execution_timeout": timedelta(hours=6),
    },
    params={
        "conn_id": Param("spark_default", type="string", description="Spark connection id"),
        "config": Param(os.path.join(PERSONA_HOME, "conf", "cluster.yaml"), type="string",
                        description="the jobs' YAML configuration"),
        "persona_home": Param(PERSONA_HOME, type="string",
                              description="folder with jobs/, conf/ and persona.zip"),
        "python": Param(os.environ.get("PERSONA_PYTHON", "python3"), type="string",
                        description="Python interpreter of the jobs on the cluster"),
        "packages": Param(DELTA_PACKAGE, type="string", description="spark-submit --packages"),
        "jars": Param("", type="string", description="spark-submit --jars"),
        "spark_conf": Param({}, type="object",
                            description="spark-submit --conf settings, e.g. executor sizing"),
        "overrides": Param([], type="array", items={"type": "string"},
                           description="key=value configuration overrides for every job"),
        "retrain": Param(True, type="boolean",
                         description="retrain.auto of the update: retrain when it is due"),
    },
    tags=["persona"],
) as dag:
    retrain = ("--set", "retrain.auto={{ params.retrain | lower }}")
    tasks = [StageSubmit(stage=stage, extra_args=retrain if stage == "update" else ())
             for stage in STAGES]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream
