"""tag: supervised profile tags → gold/user_tags (every user) and gold/tag_metrics.

Each target under ``tags.<name>`` (see :mod:`persona.tags.spec`) is a user attribute
known for some users, or a label from behaviour after a cut-off date learned from
point-in-time features computed before it (once per cut-off, shared by the tags that have
it). Per tag, a DNN and a Spark MLlib logistic regression are fitted on the same split by
user; one Horovod job trains every tag's DNN. The decision threshold of a binary tag is
chosen on the validation users; both models and the majority class are evaluated on the
held-out test users. The better of the two models on the validation users
(:mod:`persona.tags.shipping`) tags every user and is saved.

gold/user_tags has one row per user and tag: user_id, tag, value, probability (of that
value), observed (the attribute's known value, if any) and model_version (the MLflow
run). gold/tag_metrics has one row per tag and model (dnn, logreg, majority); ``shipped``
marks the model that tagged the users.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import mlflow
import numpy as np
from pyspark import StorageLevel, inheritable_thread_target
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, BooleanType, DoubleType, LongType, StringType,
                               StructField, StructType)

from persona.errors import PersonaError
from persona.features import build as fx
from persona.features.external import configured
from persona.runtime.context import StageContext
from persona.runtime.spark import iterated_partitions, kept, release
from persona.splits import user_bucket
from persona.stages.embed import EMBEDDINGS_TABLE
from persona.stages.features import FEATURES_TABLE, build_groups, feature_columns, impute_method
from persona.stages.train import petastorm_cache_url
from persona.tags import labels as tx
from persona.tags import shipping
from persona.tags.classifier import (ClassifierJob, ClassifierResult, ClassifierSpec,
                                     train_classifiers, validation_arrays)
from persona.config.schema import TAG_INPUTS as INPUTS
from persona.tags.spec import TagSpec, tag_specs
from persona.timestamps import parse_timestamp
from persona.training.inference import encode

HELP = "profile tags: a Horovod DNN and a logistic baseline per tag → gold/user_tags"
TAGS_TABLE = "gold/user_tags"
METRICS_TABLE = "gold/tag_metrics"
THRESHOLDS = [round(0.02 + 0.01 * i, 2) for i in range(97)]
METRICS_SCHEMA = StructType([
    StructField("tag", StringType()), StructField("model", StringType()),
    StructField("target", StringType()), StructField("classes", ArrayType(StringType())),
    StructField("threshold", DoubleType()), StructField("accuracy", DoubleType()),
    StructField("precision", DoubleType()), StructField("recall", DoubleType()),
    StructField("f1", DoubleType()), StructField("roc_auc", DoubleType()),
    StructField("confusion", ArrayType(ArrayType(LongType()))),
    StructField("train_users", LongType()), StructField("validation_users", LongType()),
    StructField("test_users", LongType()), StructField("inputs", StringType()),
    StructField("cutoff", StringType()), StructField("model_version", StringType()),
    StructField("shipped", BooleanType()),
])


def enabled(config) -> bool:
    """`persona run` trains tags only when ``tags`` declares some."""
    return bool(config.get("tags"))


def _timestamp(ctx: StageContext, spec: TagSpec) -> dt.datetime:
    return parse_timestamp(ctx.spark, spec.cutoff, f"tags.{spec.name}.cutoff")


@dataclass
class Dataset:
    """A tag's labelled users with their input columns, and the users to tag."""

    labelled: DataFrame  # user_id, label, the feature columns
    scoring: DataFrame  # user_id, observed, the feature columns
    columns: list[str]


def _declared_attributes(ctx: StageContext) -> list[str]:
    return [a for kind in ("categorical", "numeric")
            for a in ctx.config.get(f"sources.users.attributes.{kind}") or []]


def _attribute_dataset(ctx: StageContext, spec: TagSpec, silver: DataFrame) -> Dataset:
    users = fx.latest_profiles(ctx.lake.read("bronze/users"))
    if spec.attribute not in users.columns:
        raise PersonaError(f"tags.{spec.name}.attribute: bronze/users has no column "
                           f"{spec.attribute!r} (declare it under sources.users.attributes)")
    columns = feature_columns(silver)
    leaking = tx.leaking_columns(columns, spec.attribute, _declared_attributes(ctx))
    if leaking:
        ctx.log.info("tag %s: leaving out %s (made from the attribute itself)", spec.name,
                     ", ".join(leaking))
    columns = [c for c in columns if c not in leaking]
    labels = tx.attribute_labels(users, spec.attribute, spec.bins)
    base = silver.select("user_id", *columns)
    return Dataset(base.join(labels, "user_id"),
                   base.join(labels.withColumnRenamed("label", "observed"), "user_id", "left"),
                   columns)


FITTED = ("text", "items")  # groups that are embeddings fitted on the data they describe


class Histories:
    """Point-in-time features, fused, per cutoff: computed once for every behaviour tag
    that shares a cutoff, kept until :meth:`release`."""

    def __init__(self, ctx: StageContext):
        self.ctx = ctx
        self._events = self._span = None
        self._fused: dict[dt.datetime, DataFrame] = {}
        # Tags are prepared in threads: each cutoff's features are computed by one of them.
        self._lock = threading.RLock()

    @property
    def events(self) -> DataFrame:
        """bronze/events, read when a behaviour tag first needs it."""
        with self._lock:
            if self._events is None:
                self._events = self.ctx.lake.read("bronze/events")
            return self._events

    def span(self):
        """The first and last event time in bronze."""
        with self._lock:
            if self._span is None:
                self._span = self.events.agg(F.min("event_time").alias("first"),
                                             F.max("event_time").alias("last")).first()
            return self._span

    def at(self, cutoff: dt.datetime) -> DataFrame:
        """Every user's features from the events up to ``cutoff``, fused and imputed."""
        with self._lock:
            if cutoff not in self._fused:
                self._fused[cutoff] = self._fuse(cutoff)
            return self._fused[cutoff]

    def _fuse(self, cutoff: dt.datetime) -> DataFrame:
        before = self.events.where(F.col("event_time") <= F.lit(cutoff))
        # Embeddings fitted anew at the cutoff would not share silver's axes.
        left_out = [g for g in FITTED if g in self.ctx.config.get("features.groups")]
        if left_out:
            self.ctx.log.info("tags at cutoff %s: %s left out: refitted at the cutoff, "
                              "their dimensions would not mean what they mean in %s",
                              cutoff, " and ".join(left_out), FEATURES_TABLE)
        groups = list(build_groups(self.ctx, before, cutoff, leave_out=FITTED).values())
        # Kept while imputation reads it (statistics, then the regressions' moments).
        joined = kept(fx.join_groups(groups[0], groups[1:]))
        try:
            return kept(fx.fill_joined(joined, groups, impute_method(self.ctx.config)))
        finally:
            release(joined)

    def release(self) -> None:
        for frame in self._fused.values():
            release(frame)


def _behaviour_dataset(ctx: StageContext, spec: TagSpec, silver: DataFrame,
                       histories: Histories) -> Dataset:
    cutoff = _timestamp(ctx, spec)
    span = histories.span()
    end = cutoff + dt.timedelta(days=spec.horizon_days)
    if span["first"] is None or cutoff <= span["first"]:
        raise PersonaError(f"tags.{spec.name}.cutoff {cutoff} is not after the first event "
                           f"({span['first']}): no history to learn from")
    if end > span["last"]:
        raise PersonaError(f"tags.{spec.name}: cutoff {cutoff} + {spec.horizon_days} days ends "
                           f"after the last event ({span['last']}): the outcome would be cut "
                           f"short; move the cutoff earlier or shorten horizon_days")
    history = histories.at(cutoff)
    columns = [c for c in history.columns if c != "user_id"]
    purchases = list(ctx.config.get("features.purchase_types"))
    labels = tx.behaviour_labels(histories.events, cutoff, spec.horizon_days, spec.label,
                                 purchases, spec.top_share)
    absent = [c for c in columns if c not in silver.columns]
    if absent:
        ctx.log.info("tag %s: %s not in %s: taken as 0 when tagging", spec.name,
                     ", ".join(absent), FEATURES_TABLE)
    scoring = silver.select("user_id", *[F.col(c) if c in silver.columns else
                                         F.lit(0.0).alias(c) for c in columns])
    return Dataset(history.join(labels, "user_id"),
                   scoring.withColumn("observed", F.lit(None).cast("string")), columns)


def _inputs(ctx: StageContext, spec: TagSpec, silver: DataFrame) -> list[str]:
    """The model's inputs; the embedding only when it cannot give the label away."""
    problem = None
    if not ctx.lake.exists(EMBEDDINGS_TABLE):
        problem = f"{EMBEDDINGS_TABLE} does not exist"
    elif spec.attribute:
        if tx.leaking_columns(feature_columns(silver), spec.attribute,
                              _declared_attributes(ctx)):
            problem = (f"the encoder was trained on features made from {spec.attribute!r}, "
                       f"so the embedding gives its value away")
    else:
        as_of = silver.select("as_of").first()["as_of"]
        if as_of is not None and as_of > _timestamp(ctx, spec):
            problem = (f"the embedding describes users as of {as_of}, after the cutoff "
                       f"{spec.cutoff}, so it sees the outcome")
    if spec.inputs is None:
        if problem:
            ctx.log.info("tag %s: inputs are the features only (%s)", spec.name, problem)
            return ["features"]
        return list(INPUTS)
    if "embedding" in spec.inputs and problem:
        raise PersonaError(f"tags.{spec.name}.inputs: cannot use the embedding: {problem}")
    return spec.inputs


def _with_x(df: DataFrame, inputs: list[str], scaler: fx.Scaler | None,
            embeddings: DataFrame | None) -> DataFrame:
    """Add ``x``: the scaled feature columns and/or the embedding, as one array<float>."""
    if "embedding" in inputs:
        df = df.join(embeddings, "user_id")
    parts = []
    if "features" in inputs:
        df = scaler.transform(df, output="_scaled")
        parts.append(F.col("_scaled"))
    if "embedding" in inputs:
        parts.append(F.col("embedding"))
    return df.withColumn("x", parts[0] if len(parts) == 1 else F.concat(*parts))


@dataclass
class Evaluation:
    """One model on the test users: threshold (binary tags), scores, confusion matrix; and
    its :func:`persona.tags.shipping.validation_score`."""

    threshold: float | None
    scores: dict
    roc_auc: float | None
    confusion: list[list[int]]
    validation: float | None = None


@dataclass
class Assessed:
    """A tag's models (``dnn``: the Horovod result, ``logreg``: the MLlib model) and the
    evaluation of each of them and of the majority class."""

    models: dict
    evaluations: dict[str, Evaluation]

    @property
    def dnn(self) -> ClassifierResult:
        return self.models["dnn"]


def _evaluate(scored: DataFrame, spec: TagSpec, classes: list[str]) -> Evaluation:
    """Threshold on the validation users (binary tags), scores on the test users;
    ``scored`` has ``part``, ``y`` and ``proba`` (class probabilities)."""
    threshold = None
    validation = scored.where(F.col("part") == "validation")
    if spec.binary:
        threshold = tx.best_threshold(tx.threshold_counts(validation, THRESHOLDS))
    test = scored.where(F.col("part") == "test")
    predicted = test.withColumn("prediction", tx.predict("proba", spec.binary, threshold or 0.5))
    matrix = tx.confusion(predicted, classes)
    return Evaluation(threshold, tx.scores(matrix, spec.binary), tx.roc_auc(test, classes),
                      matrix, shipping.validation_score(validation, classes, spec.binary))


def _majority(matrix: list[list[int]], majority: int, binary: bool) -> Evaluation:
    """Always predicting the training users' most frequent class, on the same test users."""
    k = len(matrix)
    constant = [[sum(row) if j == majority else 0 for j in range(k)] for row in matrix]
    return Evaluation(None, tx.scores(constant, binary), None, constant)


def _fit_logistic(rows: DataFrame) -> LogisticRegressionModel:
    """The baseline: weighted logistic regression on the training users' ``x``."""
    return LogisticRegression(featuresCol="_v", labelCol="y", weightCol="weight",
                              probabilityCol="_p", maxIter=100, regParam=0.01).fit(
        rows.where(F.col("part") == "train").withColumn("_v", array_to_vector("x")))


def _logistic_proba(model: LogisticRegressionModel, df: DataFrame) -> DataFrame:
    """``df`` with ``proba``, the logistic regression's class probabilities of ``x``."""
    return (model.transform(df.withColumn("_v", array_to_vector("x")))
            .withColumn("proba", vector_to_array("_p").cast("array<float>"))
            .drop("_v", "_p", "rawPrediction", "prediction"))


def _save_model(name: str, kind: str, model, scaler: fx.Scaler | None, inputs: list[str],
                columns: list[str], classes: list[str], threshold: float | None) -> None:
    """The shipped model and how to build its input (``inputs.json``), as artifacts: the
    DNN as Keras JSON + weights, the logistic regression as an MLflow Spark model
    (``logreg/``, written through ``MLFLOW_DFS_TMP`` like the segments' K-Means)."""
    with tempfile.TemporaryDirectory() as tmp:
        if kind == "dnn":
            with open(os.path.join(tmp, "classifier.json"), "w", encoding="utf-8") as fh:
                fh.write(model.model_json)
            np.savez(os.path.join(tmp, "weights.npz"), *model.weights)
        else:
            import pyspark
            from mlflow import spark as spark_model

            spark_model.save_model(model, os.path.join(tmp, kind),
                                   pip_requirements=[f"pyspark=={pyspark.__version__}"])
        with open(os.path.join(tmp, "inputs.json"), "w", encoding="utf-8") as fh:
            json.dump({"model": kind, "inputs": inputs, "columns": columns, "classes": classes,
                       "threshold": threshold,
                       "scaler": scaler and {"means": scaler.means, "stds": scaler.stds}},
                      fh, indent=2)
        mlflow.log_artifacts(tmp, f"tags/{name}/model")


def metric_name(*parts: str) -> str:
    """An MLflow metric name from parts (class values may hold characters it refuses)."""
    return ".".join(re.sub(r"[^0-9A-Za-z_\-. /:]", "_", str(p)) for p in parts)


def _split(spec: TagSpec, labelled: DataFrame) -> DataFrame:
    bucket = user_bucket(spec.seed)
    return labelled.withColumn(
        "part", F.when(bucket < spec.test_fraction, "test")
        .when(bucket < spec.test_fraction + spec.validation_fraction, "validation")
        .otherwise("train"))


def _classes(spec: TagSpec, labelled: DataFrame) -> tuple[list[str], dict, dict]:
    """``(classes, training users per class, users per part)``, checked."""
    sizes = {r["part"]: r["count"] for r in labelled.groupBy("part").count().collect()}
    counts = tx.class_counts(labelled.where(F.col("part") == "train"))
    classes = tx.order_classes(counts, spec.binary,
                               tx.band_labels(spec.bins) if spec.bins else None)
    if len([c for c in classes if counts.get(c)]) < 2:
        raise PersonaError(f"tags.{spec.name}: the training users have a single class "
                           f"({', '.join(counts) or 'none'}): nothing to learn")
    if len(classes) > spec.max_classes:
        raise PersonaError(f"tags.{spec.name}: {len(classes)} classes, more than "
                           f"tags.{spec.name}.max_classes={spec.max_classes}; use bins or "
                           f"another attribute")
    if min(sizes.get("validation", 0), sizes.get("test", 0)) == 0:
        raise PersonaError(f"tags.{spec.name}: too few labelled users ({sum(sizes.values())}) "
                           f"for a train, validation and test split")
    return classes, counts, sizes


@dataclass
class Prepared:
    """A tag ready for training: its data, inputs, classes, scaler and the rows of its
    labelled users (``user_id``, ``part``, ``x``, ``y``, ``weight``; kept until
    :func:`_finish`), and its share of the training job."""

    spec: TagSpec
    data: Dataset
    inputs: list[str]
    classes: list[str]
    counts: dict
    sizes: dict
    scaler: fx.Scaler | None
    embeddings: DataFrame | None
    rows: DataFrame
    job: ClassifierJob


def _prepare(ctx: StageContext, spec: TagSpec, silver: DataFrame,
             histories: Histories) -> Prepared:
    """Labels, split, scaled inputs and the classifier of one tag. Spark work and log lines
    only (MLflow is written by :func:`_log_params`), so that the tags are prepared
    concurrently."""
    data = (_attribute_dataset(ctx, spec, silver) if spec.attribute
            else _behaviour_dataset(ctx, spec, silver, histories))
    inputs = _inputs(ctx, spec, silver)
    labelled = _split(spec, data.labelled).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        classes, counts, sizes = _classes(spec, labelled)
        ctx.log.info("tag %s (%s): %d train, %d validation, %d test users; training classes "
                     "%s; inputs %s", spec.name, spec.target, sizes.get("train", 0),
                     sizes["validation"], sizes["test"],
                     ", ".join(f"{c} {counts.get(c, 0)}" for c in classes), " + ".join(inputs))
        scaler = (fx.Scaler.fit(labelled.where(F.col("part") == "train"),
                                {c: [c] for c in data.columns}) if "features" in inputs else None)
        embeddings = (ctx.lake.read(EMBEDDINGS_TABLE).select("user_id", "embedding")
                      if "embedding" in inputs else None)
        rows = (tx.with_class_index(_with_x(labelled, inputs, scaler, embeddings), classes,
                                    tx.class_weights(counts, classes))
                .where(F.col("y").isNotNull()).select("user_id", "part", "x", "y", "weight"))
        rows = kept(iterated_partitions(rows, sum(sizes.values())))
    finally:
        labelled.unpersist()
    cls = ClassifierSpec(input_dim=len(rows.select("x").first()["x"]), classes=len(classes),
                         seed=spec.seed, **spec.classifier)
    validation = validation_arrays(rows.where(F.col("part") == "validation"),
                                   spec.validation_sample)
    job = ClassifierJob(spec.name, cls, rows.where(F.col("part") == "train"), validation)
    return Prepared(spec, data, inputs, classes, counts, sizes, scaler, embeddings, rows, job)


def _prepare_all(ctx: StageContext, specs: list[TagSpec], silver: DataFrame,
                 histories: Histories) -> list[Prepared]:
    """:func:`_prepare` of every tag, side by side: on small data its Spark jobs are short,
    and their latency, not the cores, bounds them. The first tag (in order) that fails
    raises, once every other tag is done; what those persisted is released."""
    prepare = inheritable_thread_target(_prepare)
    with ThreadPoolExecutor(len(specs)) as pool:
        futures = [pool.submit(prepare, ctx, spec, silver, histories) for spec in specs]
    failed = next((f.exception() for f in futures if f.exception() is not None), None)
    if failed is not None:
        for future in futures:
            if future.exception() is None:
                release(future.result().rows)
        raise failed
    return [future.result() for future in futures]


def _log_params(tag: Prepared) -> None:
    """A tag's classifier settings, target, inputs and classes, as MLflow parameters."""
    spec = tag.spec
    mlflow.log_params({f"{spec.name}.{k}": v for k, v in {
        **tag.job.spec.to_dict(), "target": spec.target, "inputs": "+".join(tag.inputs),
        "cutoff": spec.cutoff, "horizon_days": spec.horizon_days if spec.label else None,
        "classes": ",".join(tag.classes)}.items()})


def _finish(ctx: StageContext, tag: Prepared, assessed: Assessed):
    """Log the assessment of the trained DNN, the logistic regression and the majority
    class, ship the better model, save it and apply it to every user; returns (predictions,
    metric rows)."""
    spec, classes = tag.spec, tag.classes
    _log_assessment(ctx, tag, assessed)
    models, evaluations, result = assessed.models, assessed.evaluations, assessed.dnn
    shipped = _ship(ctx, spec, evaluations)
    rows_out = [(spec.name, model, spec.target, classes, ev.threshold,
                 *[ev.scores[m] for m in ("accuracy", "precision", "recall", "f1")],
                 ev.roc_auc, ev.confusion, tag.sizes.get("train", 0), tag.sizes["validation"],
                 tag.sizes["test"], "+".join(tag.inputs), spec.cutoff, ctx.run_id,
                 model == shipped)
                for model, ev in evaluations.items()]
    mlflow.log_dict({"classes": classes, "train_counts": tag.counts, "sizes": tag.sizes,
                     "models": {r[1]: dict(zip(METRICS_SCHEMA.fieldNames(), r))
                                for r in rows_out}}, f"tags/{spec.name}/metrics.json")
    threshold = evaluations[shipped].threshold
    _save_model(spec.name, shipped, models[shipped], tag.scaler, tag.inputs, tag.data.columns,
                classes, threshold)
    scoring = _with_x(tag.data.scoring, tag.inputs, tag.scaler, tag.embeddings).select(
        "user_id", "observed", "x")
    proba = (encode(scoring, result.model_json, result.weights, column="x", output="proba")
             if shipped == "dnn" else _logistic_proba(models["logreg"], scoring))
    index = tx.predict("proba", spec.binary, threshold or 0.5)
    predictions = proba.select(
        "user_id", F.lit(spec.name).alias("tag"),
        F.element_at(F.array(*[F.lit(c) for c in classes]), index + 1).alias("value"),
        F.element_at("proba", index + 1).cast("double").alias("probability"),
        "observed", F.lit(ctx.run_id).alias("model_version"))
    return predictions, rows_out


def _ship(ctx: StageContext, spec: TagSpec, evaluations: dict[str, Evaluation]) -> str:
    """The model that tags every user (:mod:`persona.tags.shipping`), logged and recorded."""
    scores = {m: evaluations[m].validation for m in shipping.CANDIDATES}
    shipped = shipping.shipped_model(scores)
    ctx.log.info(shipping.shipping_line(spec.name, spec.binary, scores, shipped))
    mlflow.log_param(f"{spec.name}.shipped", shipped)
    return shipped


def _assess(tag: Prepared, result: ClassifierResult) -> Assessed:
    """The logistic regression fitted on the tag's training users, then it, the trained DNN
    and the majority class evaluated. Spark work only (no logging), so that the tags are
    assessed concurrently."""
    spec, rows, classes = tag.spec, tag.rows, tag.classes
    logistic = _fit_logistic(rows)
    evaluations = {}
    for model, scored in (("dnn", encode(rows, result.model_json, result.weights, column="x",
                                         output="proba")),
                          ("logreg", _logistic_proba(logistic, rows))):
        scored = scored.persist(StorageLevel.MEMORY_AND_DISK)
        try:
            evaluations[model] = _evaluate(scored, spec, classes)
        finally:
            scored.unpersist()
    majority = classes.index(max(classes, key=lambda c: tag.counts.get(c, 0)))
    evaluations["majority"] = _majority(evaluations["dnn"].confusion, majority, spec.binary)
    return Assessed({"dnn": result, "logreg": logistic}, evaluations)


def _log_assessment(ctx: StageContext, tag: Prepared, assessed: Assessed) -> None:
    """The DNN's training curve and every model's scores, to MLflow and the log."""
    spec, result = tag.spec, assessed.dnn
    for epoch, (loss, val) in enumerate(zip(result.losses, result.validation_losses), start=1):
        mlflow.log_metrics({f"{spec.name}.loss": loss, f"{spec.name}.val_loss": val}, step=epoch)
    ctx.metric(metric_name(spec.name, "best_epoch"), result.best_epoch)
    ctx.log.info("tag %s: DNN kept epoch %d of %d (validation loss %.4f, %.1f s)", spec.name,
                 result.best_epoch, len(result.losses), min(result.validation_losses),
                 result.seconds)
    for model, ev in assessed.evaluations.items():
        validation = {f"validation_{'roc_auc' if spec.binary else 'f1'}": ev.validation}
        for metric, value in {**ev.scores, "roc_auc": ev.roc_auc, **validation}.items():
            if value is not None:
                ctx.metric(metric_name(spec.name, model, metric), value)
        ctx.log.info("tag %s %-8s accuracy %.3f precision %.3f recall %.3f F1 %.3f%s%s",
                     spec.name, model, ev.scores["accuracy"], ev.scores["precision"],
                     ev.scores["recall"], ev.scores["f1"],
                     f" ROC AUC {ev.roc_auc:.3f}" if ev.roc_auc is not None else "",
                     f" (threshold {ev.threshold:.2f})" if ev.threshold is not None else "")


def source_table(spec: TagSpec) -> str:
    """The bronze table a tag's labels come from."""
    return "bronze/users" if spec.attribute else "bronze/events"


def usable(ctx: StageContext, specs: list[TagSpec]) -> list[TagSpec]:
    """The tags that can be trained. On imported features (``features.input.path``) ingest
    does not run: a tag whose source table is absent is skipped with the reason logged
    (elsewhere its absence is the error of reading it: run `persona ingest` first)."""
    if not configured(ctx.config):
        return specs
    out = []
    for spec in specs:
        if ctx.lake.exists(source_table(spec)):
            out.append(spec)
        else:
            ctx.log.info("tag %s skipped: its labels come from %s, which imported features "
                         "(features.input.path) do not provide", spec.name, source_table(spec))
    return out


def run(ctx: StageContext) -> None:
    specs = tag_specs(ctx.config)
    trainable = usable(ctx, specs)
    if not trainable:
        ctx.log.info("no tag to train: %s; %s left as it was",
                     "every configured tag was skipped" if specs
                     else "none configured (declare targets under tags.<name>)", TAGS_TABLE)
        return
    silver = ctx.lake.read(FEATURES_TABLE)
    histories, prepared = Histories(ctx), []
    try:
        prepared += _prepare_all(ctx, trainable, silver, histories)
        for tag in prepared:
            _log_params(tag)
        ctx.log.info("training %d tag classifier(s) in one Horovod job", len(prepared))
        results = train_classifiers(ctx.spark, [p.job for p in prepared],
                                    ctx.config.get("train.num_proc"), petastorm_cache_url(ctx))
        with ThreadPoolExecutor(len(prepared)) as pool:
            assessments = list(pool.map(inheritable_thread_target(_assess), prepared, results))
        tagged, metrics = None, []
        for tag, assessed in zip(prepared, assessments):
            predictions, rows = _finish(ctx, tag, assessed)
            tagged = predictions if tagged is None else tagged.unionByName(predictions)
            metrics += rows
        ctx.lake.overwrite(tagged, TAGS_TABLE)
    finally:
        for tag in prepared:
            release(tag.rows)
        histories.release()
    ctx.lake.overwrite(ctx.spark.createDataFrame(metrics, METRICS_SCHEMA), METRICS_TABLE)
    shares = (ctx.lake.read(TAGS_TABLE).groupBy("tag", "value").count()
              .orderBy("tag", F.desc("count")).collect())
    for r in shares:
        ctx.metric(metric_name(r["tag"], "tagged", r["value"]), r["count"])
    ctx.log.info("tagged users: %s", "; ".join(f"{r['tag']}={r['value']} {r['count']}"
                                              for r in shares))
