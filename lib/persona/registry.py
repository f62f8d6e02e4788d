"""Where trained encoders live: MLflow artifacts, indexed by the lake's meta/models table."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import mlflow
import numpy as np
from pyspark.sql import functions as F

from persona.errors import PersonaError
from persona.lake import Lake

MODELS_TABLE = "meta/models"
ENCODER_ARTIFACT = "encoder"


@dataclass
class EncoderRef:
    """An encoder's version, its MLflow URI, and the feature set it was trained on."""

    version: str
    uri: str
    feature_set_version: str | None = None


def save_encoder(directory: str, architecture: str, weights: list, spec) -> None:
    """Write ``encoder.json`` (Keras architecture), ``weights.npz`` and ``spec.json``."""
    with open(os.path.join(directory, "encoder.json"), "w", encoding="utf-8") as fh:
        fh.write(architecture)
    np.savez(os.path.join(directory, "weights.npz"), *weights)
    with open(os.path.join(directory, "spec.json"), "w", encoding="utf-8") as fh:
        json.dump(spec.to_dict(), fh, indent=2)


def load_encoder(uri: str) -> tuple[str, list]:
    """(architecture JSON, weights) of the encoder at an MLflow artifact URI."""
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except Exception as exc:  # MLflow raises several types for a missing run or path
        raise PersonaError(f"cannot load encoder from {uri}: {exc}") from None
    with open(os.path.join(local, "encoder.json"), encoding="utf-8") as fh:
        architecture = fh.read()
    with np.load(os.path.join(local, "weights.npz")) as npz:
        weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    return architecture, weights


def current_encoder(lake: Lake, uri: str | None = None) -> EncoderRef:
    """The encoder to use: ``model.uri`` when given, else the latest one trained."""
    if uri:
        return EncoderRef(version=uri, uri=uri)
    latest = (lake.read(MODELS_TABLE).where(F.col("kind") == "autoencoder")
              .orderBy(F.desc("created_at")).first())
    if latest is None:
        raise PersonaError("no trained encoder in the lake: run `persona train` first")
    return EncoderRef(latest["model_version"], latest["model_uri"], latest["feature_set_version"])
