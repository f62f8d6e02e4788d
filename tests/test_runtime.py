"""Steps run side by side: results in order, the first failure raised once all are done,
Spark's local properties inherited, and MLflow metrics and tags in the stage's run; frames
kept with their lineage cut, and released; the settings a new session is given."""
import mlflow
import pytest
from py4j.protocol import Py4JJavaError
from pyspark import SparkConf
from pyspark.sql import functions as F

from persona.config import Config
from persona.lake.tables import Lake
from persona.logs import get_logger
from persona.runtime.context import StageContext
from persona.runtime.spark import kept, release, session_settings, side_by_side
from persona.runtime.tracking import stage_run
from tests.conftest import make_config

pytestmark = pytest.mark.stage


def test_side_by_side_returns_results_in_order(spark):
    spark.sparkContext.setLocalProperty("persona.test", "inherited")
    try:
        assert side_by_side(lambda: 1, lambda: "b",
                            lambda: spark.sparkContext.getLocalProperty("persona.test")) \
            == [1, "b", "inherited"]
    finally:
        spark.sparkContext.setLocalProperty("persona.test", None)


def test_side_by_side_raises_the_first_failure_after_every_step(spark):
    ran = []

    def failing(message):
        def step():
            ran.append(message)
            raise ValueError(message)
        return step

    with pytest.raises(ValueError, match="first"):
        side_by_side(failing("first"), lambda: ran.append("fine"), failing("second"))
    assert sorted(ran) == ["fine", "first", "second"]


def test_steps_side_by_side_log_to_the_stage_run(spark, tmp_path):
    """MLflow's active run is per thread: the context names its run instead."""
    config = make_config(str(tmp_path))
    with stage_run(config, "segment") as run:
        ctx = StageContext(config, spark, Lake(spark, config.path_of("lake.root")),
                           get_logger("segment"), run.info.run_id)
        side_by_side(lambda: ctx.metric("users_entered", 3.0),
                     lambda: ctx.log_metrics({"flows.0.entered": 2.0}),
                     lambda: ctx.set_tag("retrain_due", "false"),
                     lambda: ctx.log_dict({"k": 2}, "segmenter.json"))
    logged = mlflow.get_run(run.info.run_id)
    assert logged.data.metrics == {"users_entered": 3.0, "flows.0.entered": 2.0}
    assert logged.data.tags["retrain_due"] == "false"
    assert mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/segmenter.json") == {"k": 2}
    assert ctx.metrics == {"users_entered": 3.0}
    runs = mlflow.search_runs([run.info.experiment_id], output_format="list")
    assert [r.info.run_id for r in runs] == [run.info.run_id]  # no run started by a thread


def test_a_kept_frame_is_computed_once_read_through_one_node_and_released(spark):
    wide = spark.range(40).withColumn("r", F.rand(5))
    for i in range(30):  # a plan with many columns, like the joined feature groups
        wide = wide.withColumn(f"c{i}", F.col("r") * i)
    persisted = spark.sparkContext._jsc.sc().getPersistentRDDs().size()
    frame = kept(wide)
    assert spark.sparkContext._jsc.sc().getPersistentRDDs().size() == persisted + 1
    plan = frame._jdf.queryExecution().optimizedPlan()
    assert plan.getClass().getSimpleName() == "LogicalRDD" and plan.children().size() == 0
    first = frame.agg(F.sum("r"), F.sum("c29")).first()
    assert frame.agg(F.sum("r"), F.sum("c29")).first() == first  # rand() drawn once
    filtered = frame.where(F.col("id") < 10)
    release(frame)
    assert spark.sparkContext._jsc.sc().getPersistentRDDs().size() == persisted
    with pytest.raises(Py4JJavaError):
        filtered.count()


def test_a_session_keeps_generated_code_unless_the_configuration_or_spark_submit_says_otherwise():
    """Persona's session settings (Delta, the code cache) under ``spark.conf``, less what
    spark-submit was given."""
    cache = "spark.sql.codegen.cache.maxEntries"
    plain = session_settings(Config({}))
    assert plain[cache] == "2000"
    assert plain["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert session_settings(Config({"spark": {"conf": {cache: 300}}}))[cache] == "300"
    submitted = SparkConf(loadDefaults=False).set(cache, "50")
    assert cache not in session_settings(Config({}), submitted)
