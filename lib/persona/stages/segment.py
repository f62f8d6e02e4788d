"""segment: the configured segmenter fitted on the embeddings → gold/user_segments (MERGE)
and gold/segment_profiles, with ids kept across refits (gold/segments, the catalogue of ids;
gold/segment_history and gold/segment_flows, who entered and left each segment)."""
from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from datetime import datetime, timezone

import mlflow
import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, DoubleType, IntegerType, LongType, MapType, StringType,
                               StructField, StructType)

from persona.errors import PersonaError
from persona.lake.catalog import (ENCODER_ARTIFACT, current_encoder, list_model, load_encoder,
                                  load_kmeans, register_segments, save_encoder)
from persona.lake.tables import merge_counts
from persona.lake.versions import content_version
from persona.monitoring import drift
from persona.monitoring.drift import SEGMENT_REFERENCE_TABLE
from persona.monitoring.policy import Measures, retrain_reasons
from persona.monitoring.record import announce, record_drift
from persona.privacy.suppression import MIN_SIZE, note, suppressed
from persona.runtime.context import StageContext
from persona.runtime.spark import iterated_partitions, side_by_side
from persona.segmentation.dec import METHODS as REFINEMENTS
from persona.segmentation.dec import dec_spec, refine
from persona.segmentation.explain import (describe, fit_surrogate, highlights, readable_columns,
                                          segment_names, segment_rules,
                                          standardised_differences)
from persona.segmentation.identity import (CATALOGUE_TABLE, FLOWS_TABLE, HISTORY_TABLE,
                                           catalogue_changes, flows, match_ids, moves,
                                           next_segment_id, open_stays, overlap, relabel,
                                           stay_changes)
from persona.segmentation.manifold import (MANIFOLD_ARTIFACT, MODEL_FILE, Manifold,
                                           learn_manifold, manifold_method, umap_spec)
from persona.segmentation.models import (K_SELECTION_JSON, K_SELECTION_PNG, SEGMENTER_ARTIFACT,
                                         MllibKMeans, NearestCenters, SampleMixture, Segmenter,
                                         Segments, check_segments, configured_segmenter,
                                         plot_k_selection, segment_method, segment_sizes,
                                         select_k)
from persona.segmentation.profiles import feature_stats, suppress_profiles, with_vector
from persona.stages.embed import EMBEDDINGS_TABLE
from persona.stages.features import FEATURES_TABLE, feature_columns, feature_groups
from persona.stages.train import petastorm_cache_url
from persona.training.inference import encode

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
    k = ctx.config.get("segment.k")
    if k != "auto":
        return [k]
    low, high = ctx.config.get("segment.k_range")
    return list(range(low, high + 1))


def _k_criterion(ctx: StageContext) -> str:
    return ctx.config.get("segment.k_criterion")


def _k_candidates(ctx: StageContext, users: int) -> list[int]:
    candidates = [k for k in _k_range(ctx) if k < users]
    if not candidates:
        raise PersonaError(f"segment.k must be smaller than the number of users ({users})")
    return candidates


def fit_segments(ctx: StageContext, space: DataFrame, users: int, candidates: list[int],
                 segmenter: Segmenter, sample: np.ndarray | None = None
                 ) -> tuple[Segmenter, Segments]:
    """``segmenter`` with the one k of ``candidates``, or with the best k by
    ``segment.k_criterion``, with every criterion's curve plotted; fitted on ``sample``
    when given. Returns the segmenter with the chosen k and its segments."""
    if len(candidates) == 1:
        segmenter = replace(segmenter, k=candidates[0])
        return segmenter, segmenter.fit(space, sample)
    criterion = _k_criterion(ctx)
    sample_size = ctx.config.get("segment.silhouette_sample")
    chosen = select_k(space, candidates, criterion, segmenter, total=users,
                      sample_size=sample_size, log=ctx.log.info, sample=sample,
                      stability_runs=ctx.config.get("segment.stability_runs"),
                      min_stability=ctx.config.get("segment.min_stability"))
    for k, scores in chosen.scores.items():
        mlflow.log_metrics({f"k_selection.{name}": value for name, value in scores.items()},
                           step=k)
    for part, seconds in chosen.seconds.items():
        ctx.metric(f"k_selection_seconds.{part}", round(seconds, 2))
    mlflow.log_dict({"criterion": criterion, "best_by": chosen.best_by,
                     "min_stability": chosen.min_stability,
                     "scores": {str(k): s for k, s in chosen.scores.items()}},
                    K_SELECTION_JSON)
    with tempfile.TemporaryDirectory() as tmp:
        plot_k_selection(chosen, os.path.join(tmp, K_SELECTION_PNG))
        mlflow.log_artifact(os.path.join(tmp, K_SELECTION_PNG))
    k = chosen.model.k
    ctx.log.info("chose k=%d by %s over %d..%d (best k by criterion: %s)", k, criterion,
                 candidates[0], candidates[-1],
                 ", ".join(f"{c} {k}" for c, k in chosen.best_by.items()))
    return replace(segmenter, k=k), chosen.model


def _profiles(ctx: StageContext, segments: DataFrame, version: str) -> DataFrame:
    """Per segment: size, what distinguishes it (in the features' own units, among the
    columns a person can read), a short name, and the rules of a shallow surrogate tree with
    its fidelity on held-out users; segments below ``privacy.min_segment_size`` suppressed."""
    features = ctx.lake.read(FEATURES_TABLE)
    columns = feature_columns(features)
    groups = feature_groups(features) if "features" in features.columns else {}
    readable = readable_columns(columns, groups)
    # Read by the statistics and by every pass of the tree.
    users = (segments.select("user_id", "segment").join(features.select("user_id", *columns),
                                                        "user_id")
             .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        rows, pop = feature_stats(users, columns)
        surrogate = fit_surrogate(users, readable,
                                  depth=ctx.config.get("segment.surrogate_depth"),
                                  seed=ctx.config.get("segment.seed"),
                                  max_users=ctx.config.get("segment.surrogate_users"))
    finally:
        users.unpersist()
    total = sum(r["size"] for r in rows)
    numeric = ctx.config.get("sources.users.attributes.numeric") or []
    minimum = ctx.config.get(MIN_SIZE)
    z = {int(r["segment"]): standardised_differences(r, pop, columns) for r in rows}
    z_readable = {s: {c: v for c, v in zs.items() if c in readable} for s, zs in z.items()}
    names = segment_names(z_readable)
    rules = segment_rules(surrogate.tree, readable, numeric_attributes=numeric)
    ctx.metric("surrogate_fidelity", surrogate.fidelity)
    ctx.log_dict({"columns": readable, "tree": surrogate.tree, "fidelity": surrogate.fidelity,
                  "holdout_users": surrogate.holdout_users}, "surrogate_tree.json")
    out = []
    for r in rows:
        s, means = int(r["segment"]), r
        top, description = describe(means, pop, z_readable[s], numeric_attributes=numeric)
        out.append((s, int(r["size"]), r["size"] / total, description, top,
                    {c: float(means[c]) for c in columns},
                    {c: float(pop[f"mean_{c}"]) for c in columns}, version,
                    names[s], highlights(means, pop, z_readable[s], numeric_attributes=numeric),
                    z[s], rules.get(s, []), surrogate.recall.get(s), surrogate.fidelity))
        if suppressed(r["size"], minimum):
            ctx.log.info(note(s, r["size"], minimum, f"profile suppressed in {PROFILES_TABLE}"))
            continue
        ctx.log.info("segment %d \"%s\": %d users; %s", s, names[s], r["size"],
                     "; ".join(x["rule"] for x in rules.get(s, [])) or "no rule of its own")
    ctx.log.info("surrogate tree agrees with the segments for %.1f%% of %d held-out users",
                 100 * surrogate.fidelity, surrogate.holdout_users)
    return suppress_profiles(ctx.spark.createDataFrame(out, PROFILE_SCHEMA), minimum)


def _segment_model(ctx: StageContext, space: DataFrame, users: int, segmenter: Segmenter,
                   sample: np.ndarray | None) -> tuple[Segmenter, Segments, dict | None]:
    """The registered K-Means model of ``segment.model_uri`` (no fitting) with the segment id
    of each of its labels as its fit recorded them, else a new fit (ids still to match)."""
    uri = ctx.config.get("segment.model_uri")
    if not uri:
        fitted = fit_segments(ctx, space, users, _k_candidates(ctx, users), segmenter, sample)
        return (*fitted, None)
    loaded, entry = load_kmeans(uri)
    model = MllibKMeans(loaded)
    dims = space.select(F.size("embedding")).first()[0]
    if model.centers.shape[1] != dims:
        raise PersonaError(f"segment.model_uri: {uri} has {model.centers.shape[1]}-dimensional "
                           f"centres, the embeddings have {dims} dimensions")
    ctx.log.info("assigning segments with %s (k=%d) instead of fitting", uri, model.k)
    return replace(segmenter, k=model.k), model, _registered_ids(ctx, uri, entry.run_id, model.k)


def _registered_ids(ctx: StageContext, uri: str, run_id: str, k: int) -> dict[int, int] | None:
    """label → segment id as recorded by ``run_id``, the segment run that registered ``uri``;
    None for a model registered without that record (its labels are then matched like a
    new fit)."""
    try:
        record = mlflow.artifacts.load_dict(f"runs:/{run_id}/{SEGMENTER_ARTIFACT}")
    except Exception:  # MLflow raises several types for a missing run or artifact
        return None
    ids = {int(label): int(i) for label, i in record.get("ids", {}).items()}
    if sorted(ids) != list(range(k)):
        return None
    ctx.log.info("segment ids of %s (label → id): %s", uri,
             ", ".join(f"{label} → {i}" for label, i in sorted(ids.items())))
    return ids


def _check_methods(ctx: StageContext, method: str, manifold: str) -> None:
    """A mixture, refinement and the manifold fit new segments: none goes with a registered
    K-Means model; refinement and the manifold do not go together."""
    if ctx.config.get("segment.model_uri") and (method != "kmeans" or manifold != "none"):
        option = (f"segment.method={method}" if method != "kmeans"
                  else f"segment.manifold={manifold}")
        raise PersonaError(f"{option} fits new segments: it cannot be used with "
                           "segment.model_uri")
    if method in REFINEMENTS and manifold != "none":
        raise PersonaError(f"segment.method={method} refines the encoder's own space: it cannot "
                           f"be combined with segment.manifold={manifold}")


def _learn_manifold(ctx: StageContext, embeddings: DataFrame, users: int) -> Manifold:
    """UMAP learned from a sample of ``embeddings``, logged to MLflow and listed in
    meta/models (kind ``umap``, with the encoder it reads)."""
    spec = umap_spec(ctx.config)
    head = embeddings.select("model_version", "feature_set_version",
                             F.size("embedding").alias("dim")).first()
    mlflow.log_params({f"umap.{k}": v for k, v in spec.to_dict().items()})
    manifold = learn_manifold(embeddings, spec)
    ctx.log.info("UMAP to %d dimensions (%d neighbours, min_dist %g) learned from %d of %d "
                 "users", spec.n_components, spec.n_neighbors, spec.min_dist,
                 len(manifold.points), users)
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, MODEL_FILE), "wb") as fh:
            fh.write(manifold.model)
        mlflow.log_artifacts(tmp, MANIFOLD_ARTIFACT)
    list_model(ctx.lake, manifold.version, "umap", f"runs:/{ctx.run_id}/{MANIFOLD_ARTIFACT}",
               feature_set_version=head["feature_set_version"], input_dim=head["dim"],
               latent_dim=spec.n_components, input_model_version=head["model_version"])
    mlflow.set_tag("manifold_version", manifold.version)
    ctx.metric("umap_sample", len(manifold.points))
    return manifold


def _refine(ctx: StageContext, method: str, start: Segments, embedded_with: str
            ) -> tuple[DataFrame, NearestCenters, str]:
    """DEC / IDEC from the centres of ``start`` and the encoder ``embedded_with`` (the
    current one), under Horovod; the refined encoder logged and listed in meta/models.

    Returns the users' refined embeddings (user_id, embedding; persisted), the refined
    centres, and the refined encoder's version.
    """
    ref = current_encoder(ctx.lake, ctx.config.get("model.uri"))
    if ref.version != embedded_with:
        raise PersonaError(f"gold/user_embeddings were made by encoder {embedded_with}, the "
                           f"current encoder is {ref.version}: run `persona embed` first")
    architecture, weights = load_encoder(ref.uri)
    features = ctx.lake.read(FEATURES_TABLE).select("user_id", "features",
                                                    "feature_set_version")
    spec = dec_spec(ctx.config, method)
    num_proc = ctx.config.get("train.num_proc")
    ctx.log.info("%s refinement of encoder %s and %d centres on %d Horovod ranks", method,
                 ref.version, start.k, num_proc)
    mlflow.log_params({f"dec.{k}": v for k, v in spec.to_dict().items()})
    result = refine(ctx.spark, features, architecture, weights, start.centers.tolist(), spec,
                    num_proc, petastorm_cache_url(ctx))
    for entry in result.history:
        mlflow.log_metrics({f"dec.{k}": v for k, v in entry.items() if k != "step"},
                           step=entry["step"])
    ctx.metric("dec_steps", result.steps)
    ctx.metric("dec_converged", int(result.converged))
    ctx.metric("dec_seconds", round(result.seconds, 2))
    ctx.log.info("%s: %d steps, %s (%.1f s in Horovod)", method, result.steps,
                 "converged" if result.converged else "stopped at segment.dec.max_steps",
                 result.seconds)

    first = features.select("features", "feature_set_version").first()
    version = content_version([ref.version, method, result.centers],
                              arrays=result.encoder_weights)
    with tempfile.TemporaryDirectory() as tmp:
        save_encoder(tmp, result.encoder_json, result.encoder_weights, spec)
        mlflow.log_artifacts(tmp, ENCODER_ARTIFACT)
    list_model(ctx.lake, version, spec.method, f"runs:/{ctx.run_id}/{ENCODER_ARTIFACT}",
               feature_set_version=first["feature_set_version"],
               input_dim=len(first["features"]), latent_dim=len(result.centers[0]),
               final_loss=result.history[-1].get("kl", 0.0))
    mlflow.set_tag("refined_encoder_version", version)
    space = (encode(features.select("user_id", "features"), result.encoder_json,
                    result.encoder_weights)
             .select("user_id", "embedding").persist(StorageLevel.MEMORY_AND_DISK))
    return space, NearestCenters(np.array(result.centers)), version


def _record(ctx: StageContext, version: str, method: str, manifold: str,
            segmenter: Segmenter, model: Segments, encoder: str, feature_set: str,
            ids: dict[int, int]) -> None:
    """What was fitted, for evaluate to refit the same: ``segmenter.json`` in this run (with
    ``ids``, the stable id of each label of the fit) and a meta/models entry (kind
    ``segments``: input_dim the space's dimensions, latent_dim k)."""
    mlflow.log_dict({"method": method, "manifold": manifold, "segmenter": segmenter.to_dict(),
                     "encoder_version": encoder,
                     "ids": {str(label): i for label, i in ids.items()}}, SEGMENTER_ARTIFACT)
    list_model(ctx.lake, version, "segments", f"runs:/{ctx.run_id}/{SEGMENTER_ARTIFACT}",
               feature_set_version=feature_set, input_dim=model.centers.shape[1],
               latent_dim=model.k, input_model_version=encoder)


def _stable_ids(ctx: StageContext, assigned: DataFrame, labels: list[int]) -> dict[int, int]:
    """label → stable id: each label matched to a segment of the previous gold/user_segments
    (``segment.min_overlap``), the others numbered above every id in gold/segments."""
    lake = ctx.lake
    previous = lake.read_if_exists(SEGMENTS_TABLE)
    catalogue = lake.read_if_exists(CATALOGUE_TABLE)
    found = None if previous is None else overlap(
        previous, assigned.select("user_id", F.col("segment").alias("label")))
    ids = match_ids(found, labels, next_segment_id(catalogue, found),
                    ctx.config.get("segment.min_overlap"))
    kept = [i for i in ids.values() if found is not None and i in found.old]
    ctx.metric("segments_kept", len(kept))
    ctx.metric("segments_new", len(ids) - len(kept))
    ctx.log.info("segment ids (label → id): %s; %d kept, %d new",
                 ", ".join(f"{label} → {i}" for label, i in ids.items()), len(kept),
                 len(ids) - len(kept))
    return ids


def _catalogue(ctx: StageContext, profiles: DataFrame, sizes: dict[int, int], version: str,
               now: datetime) -> DataFrame:
    """gold/segments brought up to this run (MERGE by id); returns ``profiles`` with the name
    each id was first given. A suppressed segment gives no name: its id is named when its
    profile is first shown."""
    live = ctx.spark.createDataFrame(list(sizes.items()), "id int, size long").join(
        profiles.where(~F.col("suppressed")).select(F.col("segment").alias("id"), "name"),
        "id", "left")
    lake = ctx.lake
    changes = catalogue_changes(lake.read_if_exists(CATALOGUE_TABLE), live, version, now)
    changed = lake.upsert(changes, CATALOGUE_TABLE, "t.id = s.id")
    ctx.metric("catalogue_rows_changed", changed)
    names = lake.read(CATALOGUE_TABLE).select(F.col("id").alias("segment"),
                                              F.col("name").alias("_kept"))
    return (profiles.join(names, "segment", "left")
            .withColumn("name", F.when(F.col("suppressed"), F.col("name"))
                        .otherwise(F.coalesce("_kept", "name"))).select(*profiles.columns))


def _write_profiles(ctx: StageContext, segments: DataFrame, sizes: dict[int, int], version: str,
                    now: datetime) -> None:
    """gold/segment_profiles of this assignment, named from gold/segments (brought up to it)."""
    ctx.lake.overwrite(_catalogue(ctx, _profiles(ctx, segments, version), sizes, version, now),
                       PROFILES_TABLE)


def _history(ctx: StageContext, segments: DataFrame, now: datetime) -> None:
    """gold/segment_history (type 2, MERGE): stays closed and opened for the users whose
    segment changed, who are new or who are gone; the flows of users per segment logged and
    appended to gold/segment_flows. An unchanged assignment writes nothing."""
    # Read by the flows and by the MERGE (which reads its source twice).
    moved = moves(open_stays(ctx.lake), segments.select("user_id", "segment")).persist(
        StorageLevel.MEMORY_AND_DISK)
    try:
        counts = flows(moved).orderBy("segment").collect()
        for r in counts:
            ctx.log_metrics({f"flows.{r['segment']}.{kind}": r[kind]
                             for kind in ("entered", "exited", "stayed")})
        for kind in ("entered", "exited", "stayed"):
            ctx.metric(f"users_{kind}", sum(r[kind] for r in counts))
        written = ctx.lake.upsert(stay_changes(moved, now), HISTORY_TABLE,
                                  "t.user_id = s.user_id AND t.valid_from = s.valid_from "
                                  "AND t.valid_to IS NULL")
    finally:
        moved.unpersist()
    ctx.metric("history_rows_written", written)
    if written:
        ctx.lake.append(ctx.spark.createDataFrame(
            [(now, r["segment"], r["entered"], r["exited"], r["stayed"]) for r in counts],
            "run_time timestamp, segment int, entered long, exited long, stayed long"),
            FLOWS_TABLE)


def _watch_segments(ctx: StageContext, version: str, sizes: dict[int, int],
                    distances: dict[int, float], fitted: bool, now: datetime) -> None:
    """Each segment's share and mean distance to its centre: kept as the reference of a
    model fitted now; for a model fitted before (``segment.model_uri``), the share changes
    against its reference go with the distances to gold/drift and MLflow, and say whether
    retraining is due (``retrain.max_share_change``)."""
    users = sum(sizes.values())
    shares = {i: n / users for i, n in sizes.items()}
    rows = [("segment_mean_distance", str(i), float(d)) for i, d in sorted(distances.items())]
    if fitted:
        reference = ctx.spark.createDataFrame(
            [(version, i, shares[i], float(distances[i])) for i in sorted(shares)],
            "model_version string, segment int, share double, mean_distance double")
        ctx.lake.replace_where(reference, SEGMENT_REFERENCE_TABLE,
                               f"model_version = '{version}'")
    else:
        stored = ctx.lake.read_if_exists(SEGMENT_REFERENCE_TABLE)
        before = {} if stored is None else {
            r["segment"]: r["share"]
            for r in stored.where(F.col("model_version") == version).collect()}
        if not before:
            ctx.log.info("no reference shares for segment model %s: share drift not measured",
                         version)
        else:
            changes = drift.share_changes(before, shares)
            rows += [("segment_share_change", str(i), v) for i, v in changes.items()]
            worst = max(changes, key=lambda i: abs(changes[i]))
            ctx.metric("drift.max_share_change", abs(changes[worst]))
            ctx.log.info("segment shares against the fit of %s: largest change %+.3f "
                         "(segment %d)", version, changes[worst], worst)
            announce(ctx, retrain_reasons(Measures(share_change=changes),
                                          ctx.config.get("retrain")))
    record_drift(ctx, rows, now)


def run(ctx: StageContext) -> None:
    method = segment_method(ctx.config)
    manifold = manifold_method(ctx.config)
    _check_methods(ctx, method, manifold)
    embeddings = ctx.lake.read(EMBEDDINGS_TABLE)
    users = embeddings.count()
    if users < 2:
        raise PersonaError(f"{EMBEDDINGS_TABLE} has {users} user(s): nothing to segment")
    encoder, feature_set = embeddings.select("model_version", "feature_set_version").first()
    segmenter = configured_segmenter(ctx.config, _k_candidates(ctx, users)[0])
    space, sample = embeddings.select("user_id", "embedding"), None
    if manifold == "umap":
        learned = _learn_manifold(ctx, embeddings, users)
        space, encoder, sample = learned.project(space), learned.version, learned.points
    elif segmenter.sample_size is not None:
        sample = segmenter.draw_sample(space)
        ctx.log.info("Gaussian mixture (%s covariance) fitted on %d of %d users",
                     segmenter.mixture.covariance, len(sample), users)
        ctx.metric("gmm_sample", len(sample))
    space = iterated_partitions(with_vector(space), users).persist(StorageLevel.MEMORY_AND_DISK)
    refined = assigned = None
    try:
        segmenter, model, registered = _segment_model(ctx, space, users, segmenter, sample)
        start = model
        if method in REFINEMENTS:
            refined, model, encoder = _refine(ctx, method, model, encoder)
        assigned = (model.transform(space if refined is None else refined)
                    .select("user_id", F.col("segment").cast("int"), "distance")
                    .persist(StorageLevel.MEMORY_AND_DISK))
        sizes = segment_sizes(assigned)
        label = f"segment.method={method}" + (
            f" on segment.manifold={manifold}" if manifold != "none" else "")
        check_segments(label, segmenter.k, sizes)
        ids = registered or _stable_ids(ctx, assigned, sorted(sizes))
        sizes = {ids[s]: n for s, n in sizes.items()}
        distances = {ids[r["segment"]]: r["distance"] for r in assigned.groupBy("segment")
                     .agg(F.avg("distance").alias("distance")).collect()}
        centers = model.centers.tolist()
        version = content_version([encoder, centers, [ids[s] for s in sorted(ids)]])
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        changes = ctx.lake.merge(
            relabel(assigned, ids).select("*", F.lit(version).alias("model_version"),
                            F.lit(encoder).alias("encoder_version"),
                            F.current_timestamp().alias("assigned_at")),
            SEGMENTS_TABLE, key="user_id",
            changed="t.segment <> s.segment OR t.model_version <> s.model_version")
    finally:
        for df in (space, refined, assigned):
            if df is not None:
                df.unpersist()
    segments = ctx.lake.read(SEGMENTS_TABLE)
    side_by_side(
        lambda: _write_profiles(ctx, segments, sizes, version, now),
        lambda: _history(ctx, segments, now),
        lambda: _watch_segments(ctx, version, sizes, distances,
                                fitted=not ctx.config.get("segment.model_uri"), now=now))

    ctx.metric("k", len(sizes))
    ctx.metric("users", users)
    if start.cost is not None:
        ctx.metric("training_cost", start.cost)
    if isinstance(model, SampleMixture):
        ctx.metric("log_likelihood", model.log_likelihood)
        mlflow.log_dict({"covariance": segmenter.mixture.covariance, "means": centers,
                         "weights": np.exp(model.log_weights).tolist(),
                         "precision_factors": model.precision_factors.tolist()}, "gmm.json")
    for kind, count in changes.items():
        ctx.metric(f"rows_{kind}", count)
    mlflow.set_tag("segment_model_version", version)
    mlflow.log_dict({"k": model.k, "centers": centers, "encoder_version": encoder},
                    "kmeans.json")
    _record(ctx, version, method, manifold, segmenter, model, encoder, feature_set, ids)
    if method == "kmeans" and manifold == "none":
        in_use = register_segments(ctx.config, model.model,
                                   ctx.config.get("segment.model_uri"))
        ctx.log.info("registry alias now on the K-Means model in use: %s", in_use)
    ctx.log.info("%d users in %d segments (%s); merge: %s", users, len(sizes), version,
                 merge_counts(changes))
