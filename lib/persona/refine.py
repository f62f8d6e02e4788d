"""``segment.method: dec|idec``: refine the encoder and the K-Means centres with the clustering
loss, register the refined encoder, and embed every user with it."""
from __future__ import annotations

import hashlib
import json
import tempfile
from datetime import datetime, timezone

import mlflow
import numpy as np
from pyspark import StorageLevel
from pyspark.sql import DataFrame, Row
from pyspark.sql import functions as F

from persona.context import StageContext
from persona.dec import METHODS, DecSpec, refine
from persona.errors import PersonaError
from persona.registry import (ENCODER_ARTIFACT, MODELS_TABLE, current_encoder, load_encoder,
                              save_encoder)
from persona.transform.embedding import encode

SEGMENT_METHODS = ("kmeans", "gmm", *METHODS)


def segment_method(config) -> str:
    """``segment.method``: kmeans (default), gmm (a Gaussian mixture), or dec / idec (K-Means
    refined with the encoder)."""
    return config.choice("segment.method", SEGMENT_METHODS, "kmeans")


def dec_spec(config, method: str) -> DecSpec:
    """``segment.dec.*`` (defaults as in the IDEC paper), checked."""
    defaults = DecSpec(method=method)
    spec = DecSpec(
        method=method,
        alpha=config.number("segment.dec.alpha", defaults.alpha),
        gamma=config.number("segment.dec.gamma", defaults.gamma),
        optimizer=config.get("segment.dec.optimizer", defaults.optimizer),
        learning_rate=config.number("segment.dec.learning_rate", defaults.learning_rate),
        batch_size=config.integer("segment.dec.batch_size", defaults.batch_size, minimum=1),
        update_interval=config.integer("segment.dec.update_interval", defaults.update_interval,
                                       minimum=1),
        max_steps=config.integer("segment.dec.max_steps", defaults.max_steps, minimum=0),
        tol=config.number("segment.dec.tol", defaults.tol),
        decoder_epochs=config.integer("segment.dec.decoder_epochs", defaults.decoder_epochs,
                                      minimum=0),
        seed=config.integer("segment.seed", defaults.seed),
        threads_per_proc=config.integer("train.threads_per_proc", defaults.threads_per_proc,
                                        minimum=0),
    )
    if spec.optimizer not in ("adam", "sgd"):
        raise PersonaError(f"segment.dec.optimizer must be adam or sgd, got {spec.optimizer!r}")
    for key, value in (("alpha", spec.alpha), ("learning_rate", spec.learning_rate)):
        if value <= 0:
            raise PersonaError(f"segment.dec.{key} must be > 0, got {value}")
    if spec.gamma < 0 or not 0 <= spec.tol < 1:
        raise PersonaError("segment.dec.gamma must be >= 0 and segment.dec.tol in [0, 1)")
    return spec


def _version(pretrained: str, method: str, centers: list, weights: list) -> str:
    digest = hashlib.sha1(json.dumps([pretrained, method, centers]).encode())
    for w in weights:
        digest.update(np.ascontiguousarray(w).tobytes())
    return digest.hexdigest()[:12]


def _register(ctx: StageContext, version: str, spec: DecSpec, result, feature_set: str,
              input_dim: int) -> None:
    """The refined encoder as an artifact of this run, listed in meta/models once."""
    with tempfile.TemporaryDirectory() as tmp:
        save_encoder(tmp, result.encoder_json, result.encoder_weights, spec)
        mlflow.log_artifacts(tmp, ENCODER_ARTIFACT)
    models = ctx.lake.read(MODELS_TABLE)
    if models.where(F.col("model_version") == version).limit(1).count():
        return
    entry = Row(model_version=version, kind=spec.method,
                created_at=datetime.now(timezone.utc).replace(tzinfo=None),
                model_uri=f"runs:/{ctx.run_id}/{ENCODER_ARTIFACT}",
                feature_set_version=feature_set, input_dim=input_dim,
                latent_dim=len(result.centers[0]),
                final_loss=float(result.history[-1].get("kl", 0.0)))
    ctx.lake.append(ctx.spark.createDataFrame([entry]), MODELS_TABLE)


def refine_segments(ctx: StageContext, method: str, centers: list[list[float]],
                    embedded_with: str, features: DataFrame,
                    cache_url: str) -> tuple[DataFrame, list[list[float]], str]:
    """Refine, starting from the K-Means ``centers`` of the embeddings of ``embedded_with``,
    on ``features`` (silver/user_features), with Petastorm's cache under ``cache_url``.

    Returns the users' refined embeddings (user_id, embedding; persisted), the refined
    centres, and the refined encoder's version.
    """
    ref = current_encoder(ctx.lake, ctx.config.get("model.uri", None))
    if ref.version != embedded_with:
        raise PersonaError(f"gold/user_embeddings were made by encoder {embedded_with}, the "
                           f"current encoder is {ref.version}: run `persona embed` first")
    architecture, weights = load_encoder(ref.uri)
    features = features.select("user_id", "features", "feature_set_version")
    spec = dec_spec(ctx.config, method)
    num_proc = ctx.config.integer("train.num_proc", 2, minimum=1)
    ctx.log.info("%s refinement of encoder %s and %d centres on %d Horovod ranks", method,
                 ref.version, len(centers), num_proc)
    mlflow.log_params({f"dec.{k}": v for k, v in spec.to_dict().items()})
    result = refine(ctx.spark, features, architecture, weights, centers, spec, num_proc,
                    cache_url)
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
    version = _version(ref.version, method, result.centers, result.encoder_weights)
    _register(ctx, version, spec, result, first["feature_set_version"],
              len(first["features"]))
    mlflow.set_tag("refined_encoder_version", version)
    space = (encode(features.select("user_id", "features"), result.encoder_json,
                    result.encoder_weights)
             .select("user_id", "embedding").persist(StorageLevel.MEMORY_AND_DISK))
    return space, result.centers, version
