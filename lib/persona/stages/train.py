"""train: silver/user_features → a denoising autoencoder trained by Horovod ranks on Spark."""
from __future__ import annotations

import os
import tempfile

import mlflow
from pyspark.sql import functions as F

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.catalog import ENCODER_ARTIFACT, list_model, register_encoder, save_encoder
from persona.monitoring import drift
from persona.runtime.context import StageContext
from persona.stages.features import FEATURES_TABLE, feature_columns, sequence_shape
from persona.training.autoencoder import AutoencoderSpec
from persona.training.horovod import steps_per_epoch, train_autoencoder
from persona.training.privacy import dp_epsilon, require_dp_library

HELP = "train the denoising autoencoder with Horovod, data through Petastorm"
# Each model's training distribution of every named feature, which drift is measured against.
DRIFT_REFERENCE_TABLE = "meta/drift_reference"


def spec_from_config(cfg: Config, input_dim: int,
                     sequence: tuple[int, int] | None = None) -> AutoencoderSpec:
    """``train.*``; ``sequence`` is the (steps, step_size) at the end of the input."""
    steps, step_size = sequence or (0, 0)
    return AutoencoderSpec(
        input_dim=input_dim,
        hidden=cfg.get("train.hidden"),
        latent_dim=cfg.get("train.latent_dim"),
        noise=cfg.get("train.noise"),
        learning_rate=cfg.get("train.learning_rate"),
        epochs=cfg.get("train.epochs"),
        batch_size=cfg.get("train.batch_size"),
        seed=cfg.get("train.seed"),
        threads_per_proc=cfg.get("train.threads_per_proc"),
        sequence_steps=steps,
        sequence_step_size=step_size,
        sequence_encoder=cfg.get("train.sequence_encoder"),
        sequence_units=cfg.get("train.sequence_units"),
        dp_noise_multiplier=cfg.get("train.privacy.noise_multiplier"),
        dp_l2_norm_clip=cfg.get("train.privacy.l2_norm_clip"),
    )


def privacy_budget(ctx: StageContext, spec: AutoencoderSpec, users: int,
                   num_proc: int) -> tuple[float, float]:
    """(epsilon, delta) of the DP-SGD training ``spec`` describes: the accountant over the
    users, the global batch (``train.batch_size`` x ranks) and the steps that will run."""
    require_dp_library()
    global_batch = spec.batch_size * num_proc
    if global_batch >= users:
        raise PersonaError(f"train.privacy: the global batch (train.batch_size x "
                           f"train.num_proc = {global_batch}) must be smaller than the "
                           f"{users} users for DP-SGD to sample batches")
    delta = ctx.config.get("train.privacy.delta") or 1 / users
    if delta > 1 / users:
        raise PersonaError(f"train.privacy.delta {delta} is above 1 / users (1/{users}): "
                           f"such a delta would allow one user's data to be published")
    steps = spec.epochs * steps_per_epoch(users, spec.batch_size, num_proc)
    return dp_epsilon(users, global_batch, steps, spec.dp_noise_multiplier, delta), delta


def petastorm_cache_url(ctx: StageContext) -> str:
    """Where Petastorm materialises training data (``train.petastorm_cache``), as a URL."""
    path = (ctx.config.path_of("train.petastorm_cache") if ctx.config.get("train.petastorm_cache")
            else f"{ctx.lake.root}/_petastorm")
    if "://" in path or path.startswith("file:"):
        return path
    os.makedirs(path, exist_ok=True)
    return "file://" + path


def run(ctx: StageContext) -> None:
    features = ctx.lake.read(FEATURES_TABLE)
    first = features.select("features", "feature_set_version").first()
    if first is None:
        raise PersonaError(f"{FEATURES_TABLE} is empty: nothing to train on")
    sequence = sequence_shape(features)
    spec = spec_from_config(ctx.config, len(first["features"]), sequence)
    num_proc = ctx.config.get("train.num_proc")
    ctx.log.info("training on %d features, latent %d, %d epochs, %d Horovod ranks",
                 spec.input_dim, spec.latent_dim, spec.epochs, num_proc)
    if sequence:
        ctx.log.info("the last %d inputs are a sequence of %d events, read by a %s branch",
                     sequence[0] * sequence[1], sequence[0], spec.sequence_encoder)
    mlflow.log_params({f"model.{k}": v for k, v in spec.to_dict().items()})
    privacy = {}
    if spec.dp_noise_multiplier is not None:
        epsilon, delta = privacy_budget(ctx, spec, features.count(), num_proc)
        privacy = {"dp_epsilon": epsilon, "dp_delta": delta}
        for name, value in privacy.items():
            ctx.metric(name, value)
        ctx.log.info("DP-SGD: (epsilon %.3f, delta %.3g) over the users, noise multiplier "
                     "%g, clip %g (RDP accountant, shuffled batches taken for Poisson "
                     "sampling)", epsilon, delta, spec.dp_noise_multiplier,
                     spec.dp_l2_norm_clip)
    result = train_autoencoder(ctx.spark, features, spec, num_proc, petastorm_cache_url(ctx))

    for epoch, loss in enumerate(result.losses, start=1):
        mlflow.log_metric("loss", loss, step=epoch)
    ctx.metric("final_loss", result.losses[-1])
    ctx.metric("train_seconds", round(result.seconds, 2))
    ctx.log.info("final loss %.5f after %d epochs (%.1f s in Horovod)", result.losses[-1],
                 len(result.losses), result.seconds)

    with tempfile.TemporaryDirectory() as tmp:
        save_encoder(tmp, result.encoder_json, result.encoder_weights, spec)
        mlflow.log_artifacts(tmp, ENCODER_ARTIFACT)
    list_model(ctx.lake, ctx.run_id, "autoencoder", f"runs:/{ctx.run_id}/{ENCODER_ARTIFACT}",
               feature_set_version=first["feature_set_version"], input_dim=spec.input_dim,
               latent_dim=spec.latent_dim, final_loss=result.losses[-1], **privacy)
    _keep_drift_reference(ctx, features)
    mlflow.set_tag("model_version", ctx.run_id)
    registered = register_encoder(ctx.config, ctx.run_id, {
        "feature_set_version": first["feature_set_version"], "final_loss": result.losses[-1],
        **privacy})
    ctx.log.info("encoder registered as models:/%s/%s", registered.name, registered.version)


def _keep_drift_reference(ctx: StageContext, features) -> None:
    """The binned distribution of the features this model was trained on, under its version
    (replacing an earlier reference of the same version: re-runs give the same table)."""
    ref = drift.reference(features, feature_columns(features)).withColumn(
        "model_version", F.lit(ctx.run_id))
    ctx.lake.replace_where(ref, DRIFT_REFERENCE_TABLE, f"model_version = '{ctx.run_id}'")
