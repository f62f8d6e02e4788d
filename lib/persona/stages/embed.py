"""embed: the encoder applied to every user → gold/user_embeddings."""
from __future__ import annotations

from datetime import datetime, timezone

import mlflow
from pyspark import StorageLevel
from pyspark.sql import functions as F

from persona.lake.catalog import MODELS_TABLE, current_encoder, load_encoder, promote_encoder
from persona.lake.tables import merge_counts
from persona.monitoring import drift
from persona.monitoring.policy import Measures, retrain_reasons
from persona.monitoring.record import announce, record_drift
from persona.runtime.context import StageContext
from persona.stages.features import FEATURES_TABLE, feature_columns
from persona.stages.train import DRIFT_REFERENCE_TABLE
from persona.training.inference import encode

HELP = "encode every user → gold/user_embeddings"
EMBEDDINGS_TABLE = "gold/user_embeddings"


def run(ctx: StageContext) -> None:
    ref = current_encoder(ctx.lake, ctx.config.get("model.uri"))
    architecture, weights = load_encoder(ref.uri)
    features = ctx.lake.read(FEATURES_TABLE)
    if ref.feature_set_version:
        current = features.select("feature_set_version").first()
        if current and current[0] != ref.feature_set_version:
            ctx.log.info("encoder %s was trained on feature set %s, features are now %s: "
                         "run `persona train` to retrain", ref.version,
                         ref.feature_set_version, current[0])
    ctx.log.info("encoding users with encoder %s", ref.version)
    embeddings = encode(features.select("user_id", "features", "feature_set_version"),
                        architecture, weights).select(
        "user_id", "embedding", F.lit(ref.version).alias("model_version"),
        "feature_set_version").persist(StorageLevel.MEMORY_AND_DISK)  # the MERGE reads it twice
    try:
        changes = ctx.lake.merge(embeddings, EMBEDDINGS_TABLE, key="user_id",
                                 changed="t.embedding <> s.embedding "
                                         "OR t.model_version <> s.model_version "
                                         "OR t.feature_set_version <> s.feature_set_version")
    finally:
        embeddings.unpersist()
    users = ctx.lake.read(EMBEDDINGS_TABLE).count()
    ctx.log.info("%d users embedded into %s; merge: %s", users, EMBEDDINGS_TABLE,
                 merge_counts(changes))
    ctx.metric("users", users)
    mlflow.set_tag("model_version", ref.version)
    _watch_drift(ctx, ref.version, features)
    in_use = promote_encoder(ctx.config, ref)
    if in_use:
        ctx.log.info("registry alias now on the encoder in use: %s", in_use)


def _watch_drift(ctx: StageContext, version: str, features) -> None:
    """PSI of each feature against the encoder's training data, to gold/drift and MLflow,
    and whether retraining is due (``retrain.*``)."""
    reference = ctx.lake.read_if_exists(DRIFT_REFERENCE_TABLE)
    if reference is not None:
        reference = reference.where(F.col("model_version") == version)
    edges = drift.reference_edges(reference) if reference is not None else {}
    shared = [c for c in feature_columns(features) if c in edges]
    if not shared:
        ctx.log.info("no drift reference shares features with encoder %s: drift not measured",
                     version)
        return
    current = drift.bin_shares(features, {c: edges[c] for c in shared})
    values = {r["name"]: r["psi"] for r in drift.psi(
        reference.where(F.col("name").isin(shared)), current).collect()}
    measures = Measures(psi=values, model_age_days=_age_days(ctx, version))
    retrain = ctx.config.get("retrain")
    drifted = [n for n, v in values.items() if v > retrain.max_psi]
    rows = [("feature_psi", n, float(v)) for n, v in sorted(values.items())]
    rows.append(("features_drifted_share", "all", len(drifted) / len(values)))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    record_drift(ctx, rows, now)
    worst = max(values, key=values.get)
    ctx.metric("drift.max_psi", values[worst])
    ctx.metric("drift.features_drifted", len(drifted))
    ctx.log.info("drift against encoder %s's training data: %d of %d features with PSI > %g "
                 "(largest %.3f, %s)", version, len(drifted), len(values), retrain.max_psi,
                 values[worst], worst)
    announce(ctx, retrain_reasons(measures, retrain))


def _age_days(ctx: StageContext, version: str) -> float | None:
    """Days since the encoder ``version`` was trained, None when the lake does not list it."""
    row = (ctx.lake.read(MODELS_TABLE).where(F.col("model_version") == version)
           .select("created_at").first() if ctx.lake.exists(MODELS_TABLE) else None)
    if row is None or row["created_at"] is None:
        return None
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    return (now - row["created_at"]).total_seconds() / 86400
