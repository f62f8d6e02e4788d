"""Where trained models live: encoders as MLflow artifacts, indexed by the lake's meta/models
table, and both the encoder and the K-Means model as versions in the MLflow model registry."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone

import mlflow
import numpy as np
from pyspark.sql import functions as F
from pyspark.sql.types import (DoubleType, LongType, StringType, StructField, StructType,
                               TimestampType)

from persona.errors import PersonaError
from persona.lake.tables import Lake

MODELS_TABLE = "meta/models"
MODELS_SCHEMA = StructType([
    StructField("model_version", StringType()), StructField("kind", StringType()),
    StructField("created_at", TimestampType()), StructField("model_uri", StringType()),
    StructField("feature_set_version", StringType()), StructField("input_dim", LongType()),
    StructField("latent_dim", LongType()), StructField("final_loss", DoubleType()),
    StructField("input_model_version", StringType()),
    StructField("dp_epsilon", DoubleType()), StructField("dp_delta", DoubleType())])
ENCODER_ARTIFACT = "encoder"


@dataclass
class EncoderRef:
    """An encoder's version, its MLflow URI, and the feature set it was trained on."""

    version: str
    uri: str
    feature_set_version: str | None = None


def model_entry(spark, model_version: str, kind: str, model_uri: str,
                feature_set_version: str | None, input_dim: int, latent_dim: int,
                final_loss: float | None = None, input_model_version: str | None = None,
                dp_epsilon: float | None = None, dp_delta: float | None = None):
    """One meta/models row, created now (UTC): ``input_model_version`` is the model whose
    output this one reads (a manifold's encoder); ``dp_epsilon`` and ``dp_delta`` the
    differential privacy of a DP-SGD training."""
    created = datetime.now(timezone.utc).replace(tzinfo=None)
    return spark.createDataFrame(
        [(model_version, kind, created, model_uri, feature_set_version, int(input_dim),
          int(latent_dim), None if final_loss is None else float(final_loss),
          input_model_version, dp_epsilon, dp_delta)], MODELS_SCHEMA)


def list_model(lake: Lake, model_version: str, kind: str, model_uri: str, **entry) -> bool:
    """Append a model to meta/models unless its version is listed already (the same
    content gives the same version); ``entry`` as for :func:`model_entry`. Returns whether
    it was added."""
    if lake.exists(MODELS_TABLE) and lake.read(MODELS_TABLE).where(
            F.col("model_version") == model_version).limit(1).count():
        return False
    lake.append(model_entry(lake.spark, model_version, kind, model_uri, **entry), MODELS_TABLE)
    return True


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
    """The encoder to use: ``model.uri`` when given, else the latest one trained.

    A registered ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` is pinned to its version,
    and its model version is the run that trained it, as for an encoder from meta/models.
    """
    if uri and uri.startswith("models:/"):
        registered = model_version(uri)
        return EncoderRef(registered.run_id, f"models:/{registered.name}/{registered.version}",
                          registered.tags.get("feature_set_version") or None)
    if uri:
        return EncoderRef(version=uri, uri=uri)
    latest = (lake.read(MODELS_TABLE).where(F.col("kind") == "autoencoder")
              .orderBy(F.desc("created_at")).first())
    if latest is None:
        raise PersonaError("no trained encoder in the lake: run `persona train` first")
    return EncoderRef(latest["model_version"], latest["model_uri"], latest["feature_set_version"])


# --- MLflow model registry: versions of the encoder and of the K-Means model -----------------
# ``registry.alias`` (default "champion") marks the version whose output is in the gold tables:
# embed moves it to the encoder it encoded with, segment to the K-Means model it assigned with.

KMEANS_ARTIFACT = "kmeans_model"


def registry_name(config, kind: str) -> str:
    """``registry.encoder``, ``registry.segments`` or ``registry.alias`` from the configuration."""
    return config.get(f"registry.{kind}")


def model_version(uri: str):
    """The registry entry of ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
    from mlflow.exceptions import MlflowException

    rest = uri[len("models:/"):] if uri.startswith("models:/") else ""
    name, alias = rest.split("@", 1) if "@" in rest else (None, None)
    version = None
    if alias is None and rest.count("/") == 1 and rest.split("/")[1].isdigit():
        name, version = rest.split("/")
    if not name or not (alias or version):
        raise PersonaError(f"{uri!r} is not a registered model URI: expected "
                           "models:/NAME/VERSION or models:/NAME@ALIAS")
    client = mlflow.MlflowClient()
    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise PersonaError(f"cannot find registered model {uri}: {exc.message}") from None


def _new_version(name: str, source: str, run_id: str, tags: dict):
    from mlflow.exceptions import MlflowException

    client = mlflow.MlflowClient()
    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name)
    return client.create_model_version(name, source, run_id=run_id,
                                       tags={k: str(v) for k, v in tags.items()})


def _artifact_uri(run_id: str, path: str) -> str:
    return mlflow.get_run(run_id).info.artifact_uri.rstrip("/") + "/" + path


def register_encoder(config, run_id: str, tags: dict):
    """A new version of ``registry.encoder`` from the encoder logged in run ``run_id``."""
    version = _new_version(registry_name(config, "encoder"),
                           _artifact_uri(run_id, ENCODER_ARTIFACT), run_id, tags)
    mlflow.set_tag("registered_encoder", f"{version.name}/{version.version}")
    return version


def promote_encoder(config, ref: EncoderRef) -> str | None:
    """Move ``registry.alias`` to the encoder version of ``ref``; returns ``models:/NAME/VERSION``.

    An encoder from meta/models that is not registered yet (trained before the registry was
    used) is registered now; one given by another URI (a path, ``runs:/``) is left alone.
    """
    if ref.uri.startswith("models:/"):
        version = model_version(ref.uri)
    elif ref.uri != f"runs:/{ref.version}/{ENCODER_ARTIFACT}":
        return None
    else:
        name = registry_name(config, "encoder")
        found = mlflow.MlflowClient().search_model_versions(
            f"name = '{name}' and run_id = '{ref.version}'")
        version = found[0] if found else register_encoder(
            config, ref.version, {"feature_set_version": ref.feature_set_version or ""})
    return _promote(config, version)


def _promote(config, version) -> str:
    alias = registry_name(config, "alias")
    mlflow.MlflowClient().set_registered_model_alias(version.name, alias, version.version)
    uri = f"models:/{version.name}/{version.version}"
    mlflow.set_tag(f"{alias}_model", uri)
    return uri


def register_segments(config, model, uri: str | None = None) -> str:
    """Move ``registry.alias`` to the K-Means model that assigned the segments.

    A model loaded from ``uri`` keeps its version; a newly fitted one is saved as an MLflow
    Spark model (written through ``MLFLOW_DFS_TMP``, shared storage on a multi-node cluster),
    logged in the active run and registered as a new version of ``registry.segments``.
    Returns ``models:/NAME/VERSION``.
    """
    if uri:
        return _promote(config, model_version(uri))
    import mlflow.spark
    import pyspark

    with tempfile.TemporaryDirectory() as tmp:
        local = os.path.join(tmp, KMEANS_ARTIFACT)
        mlflow.spark.save_model(model, local,
                                pip_requirements=[f"pyspark=={pyspark.__version__}"])
        mlflow.log_artifacts(local, KMEANS_ARTIFACT)
    run_id = mlflow.active_run().info.run_id
    version = _new_version(registry_name(config, "segments"),
                           _artifact_uri(run_id, KMEANS_ARTIFACT), run_id, {"k": model.getK()})
    return _promote(config, version)


def load_kmeans(uri: str):
    """The MLlib KMeansModel registered at ``uri`` (``models:/NAME@ALIAS`` or ``/VERSION``),
    and the registry entry it was loaded from."""
    import mlflow.spark
    from pyspark.ml.clustering import KMeansModel

    version = model_version(uri)
    try:
        loaded = mlflow.spark.load_model(f"models:/{version.name}/{version.version}")
    except Exception as exc:  # MLflow and Spark raise several types for a bad artifact
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise PersonaError(f"cannot load K-Means model from {uri}: {first}") from None
    stages = getattr(loaded, "stages", [loaded])
    if len(stages) != 1 or not isinstance(stages[0], KMeansModel):
        raise PersonaError(f"{uri} is not a K-Means model: {stages}")
    return stages[0], version
