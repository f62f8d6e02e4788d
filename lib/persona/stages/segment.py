"""segment: K-Means on the embeddings → gold/user_segments (MERGE) and gold/segment_profiles."""
from __future__ import annotations

import hashlib
import json

import mlflow
from pyspark import StorageLevel
from pyspark.ml.clustering import KMeans, KMeansModel
from pyspark.ml.evaluation import ClusteringEvaluator
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, DoubleType, IntegerType, LongType, MapType,
                               StringType, StructField, StructType)

from persona.context import StageContext
from persona.errors import PersonaError
from persona.stages.embed import EMBEDDINGS_TABLE
from persona.stages.features import FEATURES_TABLE, feature_columns
from persona.transform.segments import (centroid_distance, describe, feature_stats,
                                        with_vector)

SEGMENTS_TABLE = "gold/user_segments"
PROFILES_TABLE = "gold/segment_profiles"

_TOP = StructType([StructField("feature", StringType()), StructField("segment_mean", DoubleType()),
                   StructField("population_mean", DoubleType()), StructField("z", DoubleType())])
PROFILE_SCHEMA = StructType([
    StructField("segment", IntegerType()), StructField("size", LongType()),
    StructField("share", DoubleType()), StructField("description", StringType()),
    StructField("top_features", ArrayType(_TOP)),
    StructField("feature_means", MapType(StringType(), DoubleType())),
    StructField("population_means", MapType(StringType(), DoubleType())),
    StructField("model_version", StringType()),
])


def _kmeans(k: int, seed: int, max_iter: int) -> KMeans:
    return KMeans(k=k, seed=seed, maxIter=max_iter, featuresCol="vector",
                  predictionCol="segment", initMode="k-means||")


def _silhouette(model: KMeansModel, sample: DataFrame) -> float:
    evaluator = ClusteringEvaluator(featuresCol="vector", predictionCol="segment")
    return float(evaluator.evaluate(model.transform(sample)))


def _k_range(ctx: StageContext) -> list[int]:
    k = ctx.config.get("segment.k", "auto")
    if k != "auto":
        return [ctx.config.integer("segment.k", minimum=2)]
    bounds = ctx.config.get("segment.k_range", [2, 10])
    if (not isinstance(bounds, list) or len(bounds) != 2
            or not all(isinstance(b, int) for b in bounds) or not 2 <= bounds[0] <= bounds[1]):
        raise PersonaError(f"segment.k_range must be [min, max] with 2 <= min <= max, "
                           f"got {bounds!r}")
    return list(range(bounds[0], bounds[1] + 1))


def fit_segments(ctx: StageContext, vectors: DataFrame, users: int) -> KMeansModel:
    """K-Means with ``segment.k``, or the k of best silhouette over ``segment.k_range``."""
    seed = ctx.config.integer("segment.seed", 7)
    max_iter = ctx.config.integer("segment.max_iter", 50, minimum=1)
    candidates = [k for k in _k_range(ctx) if k < users]
    if not candidates:
        raise PersonaError(f"segment.k must be smaller than the number of users ({users})")
    if len(candidates) == 1:
        return _kmeans(candidates[0], seed, max_iter).fit(vectors)
    sample_size = ctx.config.integer("segment.silhouette_sample", 20000, minimum=100)
    sample = vectors.sample(fraction=min(1.0, sample_size / users), seed=seed).persist()
    best, scores = None, {}
    for k in candidates:
        model = _kmeans(k, seed, max_iter).fit(vectors)
        scores[k] = _silhouette(model, sample)
        mlflow.log_metric("silhouette", scores[k], step=k)
        ctx.log.info("k=%d: silhouette %.4f", k, scores[k])
        if best is None or scores[k] > scores[best.getK()]:
            best = model
    sample.unpersist()
    mlflow.log_dict({str(k): s for k, s in scores.items()}, "k_selection.json")
    ctx.log.info("chose k=%d (best silhouette over %d..%d)", best.getK(), candidates[0],
                 candidates[-1])
    return best


def _profiles(ctx: StageContext, segments: DataFrame, version: str) -> DataFrame:
    features = ctx.lake.read(FEATURES_TABLE)
    columns = feature_columns(features)
    per_segment, population = feature_stats(features, segments, columns)
    pop = population.first().asDict()
    rows = per_segment.orderBy("segment").collect()
    total = sum(r["size"] for r in rows)
    out = []
    for r in rows:
        means = r.asDict()
        top, description = describe(means, pop, columns)
        out.append((int(r["segment"]), int(r["size"]), r["size"] / total, description, top,
                    {c: float(means[c]) for c in columns},
                    {c: float(pop[f"mean_{c}"]) for c in columns}, version))
    return ctx.spark.createDataFrame(out, PROFILE_SCHEMA)


def run(ctx: StageContext) -> None:
    embeddings = ctx.lake.read(EMBEDDINGS_TABLE)
    vectors = with_vector(embeddings).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        users = vectors.count()
        if users < 2:
            raise PersonaError(f"{EMBEDDINGS_TABLE} has {users} user(s): nothing to segment")
        model = fit_segments(ctx, vectors, users)
        centers = [c.tolist() for c in model.clusterCenters()]
        encoder = embeddings.select("model_version").first()[0]
        version = hashlib.sha1(json.dumps([encoder, centers]).encode()).hexdigest()[:12]
        assigned = model.transform(vectors).select(
            "user_id",
            F.col("segment").cast("int"),
            centroid_distance("embedding", "segment", centers).alias("distance"),
            F.lit(version).alias("model_version"),
            F.lit(encoder).alias("encoder_version"),
            F.current_timestamp().alias("assigned_at"),
        )
        changes = ctx.lake.merge(
            assigned, SEGMENTS_TABLE, key="user_id",
            changed="t.segment <> s.segment OR t.model_version <> s.model_version")
    finally:
        vectors.unpersist()
    segments = ctx.lake.read(SEGMENTS_TABLE)
    profiles = _profiles(ctx, segments, version)
    ctx.lake.overwrite(profiles, PROFILES_TABLE)

    k = model.getK()
    ctx.metric("k", k)
    ctx.metric("users", users)
    ctx.metric("training_cost", float(model.summary.trainingCost))
    for kind, count in changes.items():
        ctx.metric(f"rows_{kind}", count)
    mlflow.set_tag("segment_model_version", version)
    mlflow.log_dict({"k": k, "centers": centers, "encoder_version": encoder}, "kmeans.json")
    ctx.log.info("%d users in %d segments (%s); merge: %s", users, k, version,
                 ", ".join(f"{v} {n}" for n, v in changes.items()))
