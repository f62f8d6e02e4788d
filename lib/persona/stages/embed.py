"""embed: the encoder applied to every user → gold/user_embeddings."""
from __future__ import annotations

import mlflow
from pyspark.sql import functions as F

from persona.lake.catalog import current_encoder, load_encoder, promote_encoder
from persona.runtime.context import StageContext
from persona.stages.features import FEATURES_TABLE
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
        "feature_set_version")
    ctx.lake.overwrite(embeddings, EMBEDDINGS_TABLE)
    users = ctx.lake.read(EMBEDDINGS_TABLE).count()
    ctx.log.info("%d users embedded into %s", users, EMBEDDINGS_TABLE)
    ctx.metric("users", users)
    mlflow.set_tag("model_version", ref.version)
    in_use = promote_encoder(ctx.config, ref)
    if in_use:
        ctx.log.info("registry alias now on the encoder in use: %s", in_use)
