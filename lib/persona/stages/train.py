"""train: silver/user_features → a denoising autoencoder trained by Horovod ranks on Spark."""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone

import mlflow
from pyspark.sql import Row

from persona.config import Config
from persona.errors import PersonaError
from persona.lake.catalog import ENCODER_ARTIFACT, MODELS_TABLE, register_encoder, save_encoder
from persona.runtime.context import StageContext
from persona.stages.features import FEATURES_TABLE, sequence_shape
from persona.training.autoencoder import SEQUENCE_ENCODERS, AutoencoderSpec
from persona.training.horovod import train_autoencoder

HELP = "train the denoising autoencoder with Horovod, data through Petastorm"


def spec_from_config(cfg: Config, input_dim: int,
                     sequence: tuple[int, int] | None = None) -> AutoencoderSpec:
    """``train.*`` checked; ``sequence`` is the (steps, step_size) at the end of the input."""
    encoder = cfg.choice("train.sequence_encoder", SEQUENCE_ENCODERS, "gru")
    steps, step_size = sequence or (0, 0)
    hidden = cfg.get("train.hidden", [])
    if not isinstance(hidden, list) or not all(isinstance(h, int) and h > 0 for h in hidden):
        raise PersonaError(f"train.hidden must be a list of positive integers, got {hidden!r}")
    noise = cfg.number("train.noise", 0.1)
    if noise < 0:
        raise PersonaError(f"train.noise must be >= 0, got {noise}")
    return AutoencoderSpec(
        input_dim=input_dim,
        hidden=hidden,
        latent_dim=cfg.integer("train.latent_dim", 8, minimum=1),
        noise=noise,
        learning_rate=cfg.number("train.learning_rate", 0.002),
        epochs=cfg.integer("train.epochs", 30, minimum=1),
        batch_size=cfg.integer("train.batch_size", 128, minimum=1),
        seed=cfg.integer("train.seed", 7),
        threads_per_proc=cfg.integer("train.threads_per_proc", 1, minimum=0),
        sequence_steps=steps,
        sequence_step_size=step_size,
        sequence_encoder=encoder,
        sequence_units=cfg.integer("train.sequence_units", 16, minimum=1),
    )


def petastorm_cache_url(ctx: StageContext) -> str:
    """Where Petastorm materialises training data (``train.petastorm_cache``), as a URL."""
    path = ctx.config.path_of("train.petastorm_cache", f"{ctx.lake.root}/_petastorm")
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
    num_proc = ctx.config.integer("train.num_proc", 2, minimum=1)
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
    entry = Row(model_version=ctx.run_id, kind="autoencoder",
                created_at=datetime.now(timezone.utc).replace(tzinfo=None),
                model_uri=f"runs:/{ctx.run_id}/{ENCODER_ARTIFACT}",
                feature_set_version=first["feature_set_version"],
                input_dim=spec.input_dim, latent_dim=spec.latent_dim,
                final_loss=float(result.losses[-1]))
    ctx.lake.append(ctx.spark.createDataFrame([entry]), MODELS_TABLE)
    mlflow.set_tag("model_version", ctx.run_id)
    registered = register_encoder(ctx.config, ctx.run_id, {
        "feature_set_version": first["feature_set_version"], "final_loss": result.losses[-1]})
    ctx.log.info("encoder registered as models:/%s/%s", registered.name, registered.version)
