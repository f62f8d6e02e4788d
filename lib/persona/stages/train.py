"""train: silver/user_features → a denoising autoencoder trained by Horovod ranks on Spark."""
from __future__ import annotations

import os
import tempfile

import mlflow

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.catalog import ENCODER_ARTIFACT, list_model, register_encoder, save_encoder
from persona.runtime.context import StageContext
from persona.stages.features import FEATURES_TABLE, sequence_shape
from persona.training.autoencoder import AutoencoderSpec
from persona.training.horovod import train_autoencoder

HELP = "train the denoising autoencoder with Horovod, data through Petastorm"


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
    )


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
               latent_dim=spec.latent_dim, final_loss=result.losses[-1])
    mlflow.set_tag("model_version", ctx.run_id)
    registered = register_encoder(ctx.config, ctx.run_id, {
        "feature_set_version": first["feature_set_version"], "final_loss": result.losses[-1]})
    ctx.log.info("encoder registered as models:/%s/%s", registered.name, registered.version)
