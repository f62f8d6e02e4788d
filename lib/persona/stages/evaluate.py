"""evaluate: how good gold/user_segments is, beside K-Means baselines on the same users.

For every segmentation (the engine's, K-Means on the scaled features, and PCA to the latent
size + K-Means): internal metrics in the scaled feature space and in the space it was
clustered in; ACC, NMI and ARI against labels when there are any (``evaluate.truth.*``, or
the label column of ``features.input``); and stability, the ARI between the segmentation
and the same method re-fitted on bootstrap samples with other seeds (the engine's segmenter
as segment recorded it in meta/models). With ``evaluate.outcome.horizon_days``, predictive
validity: the share of the variance of each user's log spend and churn in the days after a
cut-off explained by the engine's segments and by two RFM baselines
(:mod:`persona.segmentation.validity`). Everything goes to MLflow and to
gold/segment_quality (one row per method, space and metric).
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta

import mlflow
import numpy as np
from pyspark import StorageLevel
from pyspark.ml.feature import PCA
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import DoubleType, StringType, StructField, StructType
from pyspark.sql.utils import AnalysisException

from persona.errors import PersonaError
from persona.features.external import LABELS_TABLE
from persona.lake.catalog import MODELS_TABLE, load_encoder
from persona.privacy.pseudonyms import Ids
from persona.runtime.context import StageContext
from persona.segmentation.manifold import load_manifold, project, sample_points
from persona.segmentation.metrics import ari, contingency, external_metrics, internal_metrics
from persona.segmentation.models import (Segmenter, configured_segmenter, fit_kmeans,
                                         fit_settings, load_segmenter)
from persona.segmentation.validity import eta_squared, kmeans_rfm, outcomes, rfm, rfm_segments
from persona.stages.embed import EMBEDDINGS_TABLE
from persona.stages.features import FEATURES_TABLE
from persona.stages.segment import SEGMENTS_TABLE
from persona.timestamps import parse_timestamp
from persona.training.inference import encode

HELP = "segment quality: internal/external metrics, K-Means baselines, stability"
QUALITY_TABLE = "gold/segment_quality"
EVENTS_TABLE = "bronze/events"
ENGINE = "persona"
OUTCOME = "outcome"
RFM_METHODS = ("rfm_segments", "rfm_kmeans")
QUALITY_SCHEMA = StructType([
    StructField("method", StringType()), StructField("space", StringType()),
    StructField("metric", StringType()), StructField("value", DoubleType()),
    StructField("segment_model_version", StringType())])


def _truth(ctx: StageContext, feature_set: str) -> DataFrame | None:
    """(user_id, label) from ``evaluate.truth.path``, else silver/user_labels, else None."""
    cfg = ctx.config
    if cfg.get("evaluate.truth.path"):
        path = cfg.path_of("evaluate.truth.path")
        fmt = str(cfg.get("evaluate.truth.format")).lower()
        id_column = str(cfg.get("evaluate.truth.id_column"))
        label_column = str(cfg.get("evaluate.truth.label_column"))
        try:
            df = ctx.spark.read.format(fmt).options(
                **({"header": "true"} if fmt == "csv" else {})).load(path)
        except AnalysisException as exc:
            first = str(exc).strip().splitlines()[0]
            raise PersonaError(f"evaluate.truth.path: cannot read {path} as {fmt}: "
                               f"{first}") from None
        for key, name in (("id_column", id_column), ("label_column", label_column)):
            if name not in df.columns:
                raise PersonaError(f"evaluate.truth.{key}: column {name!r} not found in "
                                   f"{path}; available: {', '.join(df.columns)}")
        ctx.log.info("labels: %s of %s", label_column, path)
        ids = Ids.of(cfg)  # the file holds raw ids: pseudonyms when the lake does
        return df.select(ids.column(F.col(f"`{id_column}`")).alias("user_id"),
                         F.col(f"`{label_column}`").cast("string").alias("label"))
    if ctx.lake.exists(LABELS_TABLE):
        labels = ctx.lake.read(LABELS_TABLE)
        if labels.select("feature_set_version").first()[0] == feature_set:
            ctx.log.info("labels: %s", LABELS_TABLE)
            return labels.select("user_id", "label")
        ctx.log.info("%s ignored: it belongs to another feature set", LABELS_TABLE)
    return None


def _segment_space(ctx: StageContext, encoder: str, features: DataFrame) -> DataFrame:
    """(user_id, embedding) in the space the segments were assigned in: the embeddings of
    encoder ``encoder``; for a refined (DEC/IDEC) encoder, the users encoded with it; for a
    UMAP manifold, the space it reads mapped onto it."""
    if ctx.lake.exists(EMBEDDINGS_TABLE):
        embeddings = ctx.lake.read(EMBEDDINGS_TABLE)
        if embeddings.select("model_version").first()[0] == encoder:
            return embeddings.select("user_id", "embedding")
    entry = (ctx.lake.read(MODELS_TABLE).where(F.col("model_version") == encoder).first()
             if ctx.lake.exists(MODELS_TABLE) else None)
    if entry is None:
        raise PersonaError(f"{SEGMENTS_TABLE} was assigned with encoder {encoder}, which is "
                           f"neither in {EMBEDDINGS_TABLE} nor in {MODELS_TABLE}: run "
                           "`persona embed` and `persona segment` first")
    if entry["kind"] == "umap":
        inner = _segment_space(ctx, entry["input_model_version"], features)
        return project(inner, load_manifold(entry["model_uri"]))
    architecture, weights = load_encoder(entry["model_uri"])
    return encode(features.select("user_id", "features"), architecture, weights).select(
        "user_id", "embedding")


def _baselines(ctx: StageContext, data: DataFrame, k: int, latent: int, dims: int,
               fit: dict) -> tuple[DataFrame, dict[str, float]]:
    """Add ``raw_kmeans`` (K-Means on v_features), ``pca`` (array) and ``pca_kmeans``."""
    seconds = {}
    start = time.time()
    raw = fit_kmeans(data, k, features="v_features", prediction="raw_kmeans", **fit)
    data = raw.transform(data)
    seconds["raw_kmeans"] = time.time() - start
    start = time.time()
    pca = PCA(k=min(latent, dims), inputCol="v_features", outputCol="v_pca").fit(data)
    data = pca.transform(data).withColumn("pca", vector_to_array("v_pca", "float32"))
    model = fit_kmeans(data, k, features="v_pca", prediction="pca_kmeans", **fit)
    data = model.transform(data)
    seconds["pca_kmeans"] = time.time() - start
    ctx.log.info("baselines fitted: K-Means on %d scaled features (%.1f s), PCA to %d "
                 "dimensions + K-Means (%.1f s)", dims, seconds["raw_kmeans"],
                 min(latent, dims), seconds["pca_kmeans"])
    return data, seconds


def _fitted_segmenter(ctx: StageContext, version: str, k: int) -> Segmenter:
    """The segmenter that fitted the segments of model ``version``, as segment recorded it
    in meta/models (kind ``segments``); for segments it did not record, the one ``segment.*``
    configures, with ``k`` segments."""
    entry = (ctx.lake.read(MODELS_TABLE).where(
        (F.col("model_version") == version) & (F.col("kind") == "segments")).first()
             if ctx.lake.exists(MODELS_TABLE) else None)
    if entry is None:
        ctx.log.info("segment model %s is not recorded in %s: stability refits the configured "
                     "segmenter", version, MODELS_TABLE)
        return configured_segmenter(ctx.config, k)
    return load_segmenter(entry["model_uri"])


def _stability(data: DataFrame, method: str, vector: str, k: int, runs: int, fit: dict,
               segmenter: Segmenter | None = None) -> list[float]:
    """ARI between ``method`` and the same method re-fitted on each of ``runs`` bootstrap
    samples (drawn with replacement, another seed each) and applied to every user: MLlib
    K-Means on the column ``vector`` for a baseline; for the engine, its ``segmenter``,
    on a bootstrap of its bounded sample of the array column ``embedding`` when it fits on
    a sample, else on a bootstrap of every user (one start)."""
    seed = fit["seed"]
    scores = []
    for i in range(1, runs + 1):
        if segmenter is None:
            sample = data.select(vector).sample(withReplacement=True, fraction=1.0,
                                                seed=seed + i)
            model = fit_kmeans(sample, k, seed + 1000 * i, fit["max_iter"], features=vector,
                               prediction="_refit")
            refitted = model.transform(data.select(method, vector))
        else:
            refit = replace(segmenter, seed=segmenter.seed + 1000 * i)
            if segmenter.sample_size is None:
                bootstrap = data.select("embedding", F.col(vector).alias("vector")).sample(
                    withReplacement=True, fraction=1.0, seed=seed + i)
                model = replace(refit, n_init=1).fit(bootstrap)
            else:
                points = sample_points(data.select("user_id", "embedding"),
                                       segmenter.sample_size, seed + i)
                draw = np.random.default_rng(seed + i).integers(0, len(points), len(points))
                model = refit.fit(data, sample=points[draw])
            refitted = model.transform(data.select(method, "embedding")) \
                .withColumnRenamed("segment", "_refit")
        scores.append(ari(contingency(refitted, method, "_refit")))
    return scores


def _outcome_window(ctx: StageContext) -> tuple[DataFrame, datetime, int] | None:
    """bronze/events, the cut-off and the horizon of ``evaluate.outcome``, checked before
    anything is measured; None when predictive validity is off."""
    cfg = ctx.config
    horizon = cfg.get("evaluate.outcome.horizon_days")
    if horizon is None:
        return None
    key = "evaluate.outcome.cutoff" if cfg.get("evaluate.outcome.cutoff") else "features.as_of"
    if not cfg.get(key):
        raise PersonaError("evaluate.outcome.horizon_days needs a cut-off: set features.as_of "
                           "(or evaluate.outcome.cutoff) to a date before the end of the "
                           "events, so that there is a future to predict")
    cutoff = parse_timestamp(ctx.spark, cfg.get(key), key)
    if not ctx.lake.exists(EVENTS_TABLE):
        raise PersonaError(f"evaluate.outcome.horizon_days needs {EVENTS_TABLE}: run "
                           "`persona ingest` first")
    events = ctx.lake.read(EVENTS_TABLE)
    last = events.agg(F.max("event_time")).first()[0]
    if last is None or cutoff + timedelta(days=horizon) > last:
        raise PersonaError(f"evaluate.outcome: cutoff {cutoff} ({key}) + {horizon} days ends "
                           f"after the last event in {EVENTS_TABLE} ({last}): the outcome "
                           "would be cut short; set an earlier cutoff or a shorter "
                           "evaluate.outcome.horizon_days")
    return events, cutoff, horizon


def _outcome(ctx: StageContext, window: tuple[DataFrame, datetime, int], segments: DataFrame,
             k: int, fit: dict) -> list[tuple]:
    """(method, "outcome", metric, value): η² of log spend and churn in the horizon for the
    engine's segments and the RFM baselines (k segments for K-Means), over the segmented
    users active at or before the cut-off; users, segments and horizon_days per method."""
    events, cutoff, horizon = window
    purchases = list(ctx.config.get("features.purchase_types"))
    future = (segments.select("user_id", F.col("segment").alias(ENGINE))
              .join(outcomes(events, cutoff, horizon, purchases), "user_id")
              .persist(StorageLevel.MEMORY_AND_DISK))
    history = (rfm(events, cutoff, purchases).join(future.select("user_id"), "user_id")
               .persist(StorageLevel.MEMORY_AND_DISK))
    methods = (ENGINE, *RFM_METHODS)
    cached = [future, history]
    try:
        users = future.count()
        if users == 0:
            raise PersonaError(f"evaluate.outcome: no segmented user has an event at or "
                               f"before the cutoff {cutoff}: set a later cutoff")
        named = rfm_segments(history).select("user_id", F.col("segment").alias(RFM_METHODS[0]))
        clustered = kmeans_rfm(history, k, fit["seed"], fit["max_iter"], fit["n_init"]) \
            .select("user_id", F.col("segment").alias(RFM_METHODS[1]))
        scored = future.join(named, "user_id").join(clustered, "user_id") \
            .persist(StorageLevel.MEMORY_AND_DISK)
        cached.append(scored)
        counts = scored.agg(*[F.countDistinct(m).alias(m) for m in methods]).first()
        rows = []
        for m in methods:
            rows += [(m, OUTCOME, "eta2_log_spend", eta_squared(scored, m, "log_spend")),
                     (m, OUTCOME, "eta2_churn", eta_squared(scored, m, "churn")),
                     (m, OUTCOME, "users", float(users)),
                     (m, OUTCOME, "segments", float(counts[m])),
                     (m, OUTCOME, "horizon_days", float(horizon))]
    finally:
        for df in cached:
            df.unpersist()
    ctx.log.info("outcome in the %d days after %s: %d users scored; segments: %s", horizon,
                 cutoff, users, ", ".join(f"{m} {counts[m]}" for m in methods))
    return rows


def _table(rows: list[tuple], methods: list[str]) -> str:
    """A plain-text table of the headline numbers, one line per method."""
    values = {(m, s, k): v for m, s, k, v in rows}
    columns = [("labels", "acc", "ACC"), ("labels", "nmi", "NMI"), ("labels", "ari", "ARI"),
               ("features", "silhouette", "silhouette"),
               ("features", "davies_bouldin", "Davies-Bouldin"),
               ("features", "calinski_harabasz", "Calinski-Harabasz"),
               ("stability", "ari_mean", "stability ARI"),
               (OUTCOME, "eta2_log_spend", "eta2 log spend"),
               (OUTCOME, "eta2_churn", "eta2 churn")]
    present = [c for c in columns if any((m, c[0], c[1]) in values for m in methods)]
    lines = ["method      " + "".join(f"{c[2]:>19}" for c in present)]
    for m in methods:
        cells = [values.get((m, space, metric)) for space, metric, _ in present]
        lines.append(f"{m:<12}" + "".join(f"{'-' if v is None else f'{v:.4f}':>19}"
                                          for v in cells))
    return "\n".join(lines)


def run(ctx: StageContext) -> None:
    cfg = ctx.config
    sample_size = cfg.get("evaluate.sample")
    runs = cfg.get("evaluate.stability_runs")
    baselines = cfg.get("evaluate.baselines")
    fit = fit_settings(cfg)
    window = _outcome_window(ctx)

    segments = ctx.lake.read(SEGMENTS_TABLE)
    features = ctx.lake.read(FEATURES_TABLE)
    head = segments.select("model_version", "encoder_version").first()
    if head is None:
        raise PersonaError(f"{SEGMENTS_TABLE} is empty: run `persona segment` first")
    version, encoder = head
    space = _segment_space(ctx, encoder, features)
    truth = _truth(ctx, features.select("feature_set_version").first()[0])

    data = (features.select("user_id", "features")
            .join(segments.select("user_id", F.col("segment").alias(ENGINE)), "user_id")
            .join(space, "user_id"))
    if truth is not None:
        data = data.join(truth, "user_id", "left")
    data = data.withColumn("v_features", array_to_vector("features")).withColumn(
        "v_embedding", array_to_vector("embedding")).persist(StorageLevel.MEMORY_AND_DISK)
    first = data.select(F.size("features").alias("d"), F.size("embedding").alias("z")).first()
    users = data.count()
    k = data.select(ENGINE).distinct().count()
    if users < 3 or k < 2:
        raise PersonaError(f"{users} segmented user(s) in {k} segment(s): nothing to evaluate")
    outcome = _outcome(ctx, window, segments, k, fit) if window is not None else []

    spaces = {ENGINE: {"own": ("embedding", "v_embedding"), "features": ("features", None)}}
    seconds: dict[str, float] = {}
    if baselines:
        evaluated, seconds = _baselines(ctx, data, k, first["z"], first["d"], fit)
        evaluated = evaluated.persist(StorageLevel.MEMORY_AND_DISK)
        data.unpersist()
        data = evaluated
        spaces["raw_kmeans"] = {"features": ("features", "v_features")}
        spaces["pca_kmeans"] = {"own": ("pca", "v_pca"), "features": ("features", None)}
    try:
        segmenter = _fitted_segmenter(ctx, version, k) if runs else None
        rows = _measure(ctx, data, spaces, truth is not None, users, k, runs, sample_size, fit,
                        segmenter)
    finally:
        data.unpersist()
    rows += [(m, "time", "seconds", s) for m, s in seconds.items()] + outcome
    methods = list(spaces) + (list(RFM_METHODS) if outcome else [])

    for method, space_name, metric, value in rows:
        name = (f"{method}.{metric}" if space_name in ("labels", "time")
                else f"{method}.{space_name}.{metric}")
        ctx.metric(name, value)
    ctx.metric("users", users)
    ctx.metric("k", k)
    ctx.lake.overwrite(ctx.spark.createDataFrame(
        [(m, s, n, float(v), version) for m, s, n, v in rows], QUALITY_SCHEMA), QUALITY_TABLE)
    table = _table(rows, methods)
    mlflow.log_text(table + "\n", "evaluation.txt")
    mlflow.log_dict({"segment_model_version": version, "users": users, "k": k,
                     "results": [dict(zip(("method", "space", "metric", "value"), r))
                                 for r in rows]}, "evaluation.json")
    mlflow.set_tag("segment_model_version", version)
    ctx.log.info("%d users, %d segments (model %s)\n%s", users, k, version, table)


def _measure(ctx: StageContext, data: DataFrame, spaces: dict, labelled: bool, users: int,
             k: int, runs: int, sample_size: int, fit: dict,
             segmenter: Segmenter | None) -> list[tuple]:
    """(method, space, metric, value) for every segmentation: internal metrics per space,
    external metrics against ``label``, and stability in the segmentation's own space (the
    engine's refitted by ``segmenter``)."""
    rows: list[tuple] = []
    for method, method_spaces in spaces.items():
        for space_name, (column, _) in method_spaces.items():
            scores = internal_metrics(data, column, method, users, sample_size, fit["seed"])
            rows += [(method, space_name, name, value) for name, value in scores.items()]
        if labelled:
            table = contingency(data, "label", method)
            rows += [(method, "labels", name, value)
                     for name, value in external_metrics(table).items()]
            rows.append((method, "labels", "labelled_users", float(table.sum())))
        if runs:
            vector = next(v for _, v in method_spaces.values() if v)
            scores = _stability(data, method, vector, k, runs, fit,
                                segmenter if method == ENGINE else None)
            rows += [(method, "stability", "ari_mean", sum(scores) / len(scores)),
                     (method, "stability", "ari_min", min(scores))]
        ctx.log.info("%s measured", method)
    return rows
