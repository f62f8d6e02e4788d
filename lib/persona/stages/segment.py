"""segment: K-Means on the embeddings → gold/user_segments (MERGE) and gold/segment_profiles."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile

import mlflow
import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, DoubleType, IntegerType, LongType, MapType, StringType,
                               StructField, StructType)

from persona.errors import PersonaError
from persona.lake.catalog import load_kmeans, register_segments
from persona.runtime.context import StageContext
from persona.segmentation.dec import METHODS as REFINEMENTS
from persona.segmentation.dec import nearest_center, refine_segments, segment_method
from persona.segmentation.explain import (fit_surrogate, highlights, segment_names, segment_rules,
                                          standardised_differences)
from persona.segmentation.manifold import manifold_method, map_to_manifold, sample_points
from persona.segmentation.metrics import CRITERIA
from persona.segmentation.models import (MixtureSpec, SampleMixture, fit_segments_model,
                                         fit_settings, mixture_spec, plot_k_selection, select_k,
                                         training_cost)
from persona.segmentation.profiles import centroid_distance, describe, feature_stats, with_vector
from persona.stages.embed import EMBEDDINGS_TABLE
from persona.stages.features import FEATURES_TABLE, feature_columns
from persona.stages.train import petastorm_cache_url

HELP = ("K-Means (or segment.method: gmm, a Gaussian mixture) on the embeddings "
        "(segment.manifold: umap maps them onto a manifold first; segment.method: dec|idec "
        "refines them) → gold/user_segments and gold/segment_profiles")
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
    StructField("name", StringType()),
    StructField("highlights", ArrayType(StringType())),
    StructField("feature_z", MapType(StringType(), DoubleType())),
    StructField("rules", ArrayType(StructType([
        StructField("rule", StringType()), StructField("users", LongType()),
        StructField("coverage", DoubleType()), StructField("precision", DoubleType())]))),
    StructField("surrogate_recall", DoubleType()),
    StructField("surrogate_fidelity", DoubleType()),
])


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


def _k_criterion(ctx: StageContext) -> str:
    return ctx.config.choice("segment.k_criterion", list(CRITERIA), "silhouette")


def fit_segments(ctx: StageContext, vectors: DataFrame, users: int,
                 sample: np.ndarray | None = None, mixture: MixtureSpec | None = None):
    """K-Means with ``segment.k`` (best of ``segment.n_init`` starts), or the best k over
    ``segment.k_range`` by ``segment.k_criterion``, with every criterion's curve plotted;
    the Gaussian mixture ``mixture`` instead of K-Means when given.

    Fitted on ``sample`` when given (a bounded sample of users), else on every user."""
    fit = fit_settings(ctx.config)
    candidates = [k for k in _k_range(ctx) if k < users]
    if not candidates:
        raise PersonaError(f"segment.k must be smaller than the number of users ({users})")
    if len(candidates) == 1:
        return fit_segments_model(vectors, candidates[0], sample=sample, mixture=mixture,
                                  **fit)
    criterion = _k_criterion(ctx)
    sample_size = ctx.config.integer("segment.silhouette_sample", 20000, minimum=100)
    chosen = select_k(vectors, candidates, criterion, total=users, sample_size=sample_size,
                      log=ctx.log.info, sample=sample, mixture=mixture, **fit)
    for k, scores in chosen.scores.items():
        mlflow.log_metrics({f"k_selection.{name}": value for name, value in scores.items()},
                           step=k)
    mlflow.log_dict({"criterion": criterion, "best_by": chosen.best_by,
                     "scores": {str(k): s for k, s in chosen.scores.items()}},
                    "k_selection.json")
    with tempfile.TemporaryDirectory() as tmp:
        plot_k_selection(chosen, os.path.join(tmp, "k_selection.png"))
        mlflow.log_artifact(os.path.join(tmp, "k_selection.png"))
    ctx.log.info("chose k=%d by %s over %d..%d (best k by criterion: %s)", chosen.model.getK(),
                 criterion, candidates[0], candidates[-1],
                 ", ".join(f"{c} {k}" for c, k in chosen.best_by.items()))
    return chosen.model


def _profiles(ctx: StageContext, segments: DataFrame, version: str) -> DataFrame:
    """Per segment: size, what distinguishes it (in the features' own units), a short
    name, and the rules of a shallow surrogate tree with its fidelity on held-out users."""
    features = ctx.lake.read(FEATURES_TABLE)
    columns = feature_columns(features)
    per_segment, population = feature_stats(features, segments, columns)
    pop = population.first().asDict()
    rows = per_segment.orderBy("segment").collect()
    total = sum(r["size"] for r in rows)
    numeric = ctx.config.get("sources.users.attributes.numeric", None) or []
    z = {int(r["segment"]): standardised_differences(r.asDict(), pop, columns) for r in rows}
    names = segment_names(z)
    surrogate = fit_surrogate(features, segments, columns,
                              depth=ctx.config.integer("segment.surrogate_depth", 3, minimum=1),
                              seed=ctx.config.integer("segment.seed", 7))
    rules = segment_rules(surrogate.tree, columns, numeric_attributes=numeric)
    ctx.metric("surrogate_fidelity", surrogate.fidelity)
    mlflow.log_dict({"columns": columns, "tree": surrogate.tree, "fidelity": surrogate.fidelity,
                     "holdout_users": surrogate.holdout_users}, "surrogate_tree.json")
    out = []
    for r in rows:
        s, means = int(r["segment"]), r.asDict()
        top, description = describe(means, pop, columns)
        out.append((s, int(r["size"]), r["size"] / total, description, top,
                    {c: float(means[c]) for c in columns},
                    {c: float(pop[f"mean_{c}"]) for c in columns}, version,
                    names[s], highlights(means, pop, z[s], numeric_attributes=numeric), z[s],
                    rules.get(s, []), surrogate.recall.get(s), surrogate.fidelity))
        ctx.log.info("segment %d \"%s\": %d users; %s", s, names[s], r["size"],
                     "; ".join(x["rule"] for x in rules.get(s, [])) or "no rule of its own")
    ctx.log.info("surrogate tree agrees with the segments for %.1f%% of %d held-out users",
                 100 * surrogate.fidelity, surrogate.holdout_users)
    return ctx.spark.createDataFrame(out, PROFILE_SCHEMA)


def _segment_model(ctx: StageContext, vectors: DataFrame, users: int,
                   sample: np.ndarray | None, mixture: MixtureSpec | None):
    """The registered K-Means model of ``segment.model_uri`` (no fitting), else a new fit."""
    uri = ctx.config.get("segment.model_uri", None)
    if not uri:
        return fit_segments(ctx, vectors, users, sample, mixture)
    model = load_kmeans(uri)
    dims = vectors.select(F.size("embedding")).first()[0]
    centre_dims = len(model.clusterCenters()[0])
    if centre_dims != dims:
        raise PersonaError(f"segment.model_uri: {uri} has {centre_dims}-dimensional centres, "
                           f"the embeddings have {dims} dimensions")
    ctx.log.info("assigning segments with %s (k=%d) instead of fitting", uri, model.getK())
    return model


def _check_methods(ctx: StageContext, method: str, manifold: str) -> None:
    """A mixture, refinement and the manifold fit new segments: none goes with a registered
    K-Means model; refinement and the manifold do not go together."""
    if ctx.config.get("segment.model_uri", None) and (method != "kmeans" or manifold != "none"):
        option = (f"segment.method={method}" if method != "kmeans"
                  else f"segment.manifold={manifold}")
        raise PersonaError(f"{option} fits new segments: it cannot be used with "
                           "segment.model_uri")
    if method in REFINEMENTS and manifold != "none":
        raise PersonaError(f"segment.method={method} refines the encoder's own space: it cannot "
                           f"be combined with segment.manifold={manifold}")


def run(ctx: StageContext) -> None:
    method = segment_method(ctx.config)
    manifold = manifold_method(ctx.config)
    _check_methods(ctx, method, manifold)
    embeddings = ctx.lake.read(EMBEDDINGS_TABLE)
    users = embeddings.count()
    if users < 2:
        raise PersonaError(f"{EMBEDDINGS_TABLE} has {users} user(s): nothing to segment")
    encoder = embeddings.select("model_version").first()[0]
    space, sample = embeddings.select("user_id", "embedding"), None
    if manifold == "umap":
        space, encoder, sample = map_to_manifold(ctx, embeddings, users)
    mixture = mixture_spec(ctx.config) if method == "gmm" else None
    if mixture is not None and sample is None:
        sample = sample_points(space, mixture.sample, fit_settings(ctx.config)["seed"])
        ctx.log.info("Gaussian mixture (%s covariance) fitted on %d of %d users",
                     mixture.covariance, len(sample), users)
        ctx.metric("gmm_sample", len(sample))
    vectors = with_vector(space).persist(StorageLevel.MEMORY_AND_DISK)
    refined = None
    try:
        model = _segment_model(ctx, vectors, users, sample, mixture)
        centers = [c.tolist() for c in model.clusterCenters()]
        labelled = model.transform(vectors)
        if method in REFINEMENTS:
            refined, centers, encoder = refine_segments(
                ctx, method, centers, encoder, ctx.lake.read(FEATURES_TABLE),
                petastorm_cache_url(ctx))
            labelled = refined.withColumn("segment", nearest_center("embedding", centers))
        version = hashlib.sha1(json.dumps([encoder, centers]).encode()).hexdigest()[:12]
        assigned = labelled.select(
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
        if refined is not None:
            refined.unpersist()
    segments = ctx.lake.read(SEGMENTS_TABLE)
    profiles = _profiles(ctx, segments, version)
    ctx.lake.overwrite(profiles, PROFILES_TABLE)

    k = model.getK()
    ctx.metric("k", k)
    ctx.metric("users", users)
    cost = training_cost(model)
    if cost is not None:
        ctx.metric("training_cost", cost)
    if isinstance(model, SampleMixture):
        ctx.metric("log_likelihood", model.log_likelihood)
        mlflow.log_dict({"covariance": mixture.covariance, "means": centers,
                         "weights": np.exp(model.log_weights).tolist(),
                         "precision_factors": model.precision_factors.tolist()}, "gmm.json")
    for kind, count in changes.items():
        ctx.metric(f"rows_{kind}", count)
    mlflow.set_tag("segment_model_version", version)
    mlflow.log_dict({"k": k, "centers": centers, "encoder_version": encoder}, "kmeans.json")
    if method == "kmeans" and manifold == "none":
        in_use = register_segments(ctx.config, model, ctx.config.get("segment.model_uri", None))
        ctx.log.info("registry alias now on the K-Means model in use: %s", in_use)
    ctx.log.info("%d users in %d segments (%s); merge: %s", users, k, version,
                 ", ".join(f"{v} {n}" for n, v in changes.items()))
