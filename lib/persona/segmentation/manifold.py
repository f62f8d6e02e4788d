"""Distributed mapping onto a learned manifold: a fitted UMAP model applied to every user in
Spark (pandas UDF).

``segment.manifold: umap``: the embeddings mapped onto a low-dimensional manifold learned by
UMAP, and K-Means run there (N2D: McConville et al. 2020, "(Not Too) Deep Clustering via
Clustering the Local Manifold of an Autoencoded Embedding").

The autoencoder compresses the features; UMAP keeps who is near whom in that space and
pulls dense regions apart, which K-Means needs when segments are not round blobs. UMAP
learns the manifold from a bounded sample of users on the driver (``segment.umap.sample``);
every user is then mapped onto it by executors (:func:`project`),
so that the driver's memory does not grow with the number of users. The fitted model is
logged to MLflow and listed in meta/models (kind ``umap``, with the encoder it reads).
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import (ArrayType, DoubleType, FloatType, LongType, StringType, StructField,
                               StructType, TimestampType)

from persona.errors import PersonaError
from persona.lake.catalog import MODELS_TABLE
from persona.runtime.context import StageContext


def project(df: DataFrame, model: bytes, column: str = "embedding",
            output: str = "embedding") -> DataFrame:
    """Set ``output`` (array<float>) to the coordinates of ``column`` on the manifold of
    ``model`` (a pickled ``umap.UMAP``).

    The model is broadcast once; each Spark task unpickles it once and maps its partition in
    Arrow batches, with one numba thread (Spark already runs a task per core).
    """
    model_bc = df.sparkSession.sparkContext.broadcast(model)

    @F.pandas_udf(ArrayType(FloatType()))
    def _project(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        import pickle

        import numba

        numba.set_num_threads(1)
        reducer = pickle.loads(model_bc.value)
        for batch in batches:
            points = np.stack(batch.to_numpy()).astype(np.float32)
            yield pd.Series(list(reducer.transform(points).astype(np.float32)))

    return df.withColumn(output, _project(F.col(column)))


MANIFOLDS = ("none", "umap")
MANIFOLD_ARTIFACT = "manifold"
MODEL_FILE = "umap.pkl"
_ENTRY_SCHEMA = StructType([
    StructField("model_version", StringType()), StructField("kind", StringType()),
    StructField("created_at", TimestampType()), StructField("model_uri", StringType()),
    StructField("feature_set_version", StringType()), StructField("input_dim", LongType()),
    StructField("latent_dim", LongType()), StructField("final_loss", DoubleType()),
    StructField("input_model_version", StringType())])


@dataclass
class UmapSpec:
    """UMAP settings, from ``segment.umap.*``."""

    n_components: int = 10
    n_neighbors: int = 10
    min_dist: float = 0.0
    sample: int = 50_000  # users the manifold is learned from
    seed: int = 7

    def to_dict(self) -> dict:
        return asdict(self)


def manifold_method(config) -> str:
    """``segment.manifold``: ``none`` (default) or ``umap``."""
    return config.choice("segment.manifold", MANIFOLDS, "none")


def umap_spec(config) -> UmapSpec:
    """``segment.umap.*``, checked."""
    defaults = UmapSpec()
    min_dist = config.number("segment.umap.min_dist", defaults.min_dist)
    if not 0 <= min_dist <= 1:
        raise PersonaError(f"segment.umap.min_dist must be in [0, 1], got {min_dist}")
    return UmapSpec(
        n_components=config.integer("segment.umap.n_components", defaults.n_components,
                                    minimum=1),
        n_neighbors=config.integer("segment.umap.n_neighbors", defaults.n_neighbors,
                                   minimum=2),
        min_dist=float(min_dist),
        sample=config.integer("segment.umap.sample", defaults.sample, minimum=10),
        seed=config.integer("segment.seed", defaults.seed),
    )


def fit_umap(points: np.ndarray, spec: UmapSpec):
    """UMAP fitted on ``points`` (one row per user), seeded, hence single-threaded."""
    import umap

    return umap.UMAP(n_components=spec.n_components,
                     n_neighbors=min(spec.n_neighbors, len(points) - 1),
                     min_dist=spec.min_dist, random_state=spec.seed, n_jobs=1,
                     transform_seed=spec.seed).fit(points)


def sample_points(space: DataFrame, size: int, seed: int) -> np.ndarray:
    """At most ``size`` embeddings, a pseudo-random sample (by a hash of the user id and
    ``seed``) that does not depend on how the table is partitioned."""
    rows = (space.orderBy(F.xxhash64("user_id", F.lit(seed)), "user_id").limit(size)
            .select("embedding").collect())
    return np.array([r["embedding"] for r in rows], dtype=np.float32)


def load_manifold(uri: str) -> bytes:
    """The pickled UMAP model logged at an MLflow artifact URI."""
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=uri)
    except Exception as exc:  # MLflow raises several types for a missing run or path
        raise PersonaError(f"cannot load the manifold from {uri}: {exc}") from None
    with open(os.path.join(local, MODEL_FILE), "rb") as fh:
        return fh.read()


def map_to_manifold(ctx: StageContext, embeddings: DataFrame, users: int
                    ) -> tuple[DataFrame, str, np.ndarray]:
    """Learn the manifold of ``embeddings`` (user_id, embedding, model_version,
    feature_set_version) and map every user onto it.

    Returns (user_id, embedding) with the manifold coordinates as ``embedding``; the
    manifold's version, recorded in meta/models with the encoder it reads; and the
    coordinates of the sample it was learned from, where segments are fitted.
    """
    spec = umap_spec(ctx.config)
    head = embeddings.select("model_version", "feature_set_version",
                             F.size("embedding").alias("dim")).first()
    points = sample_points(embeddings, spec.sample, spec.seed)
    ctx.log.info("UMAP to %d dimensions (%d neighbours, min_dist %g) learned from %d of %d "
                 "users", spec.n_components, spec.n_neighbors, spec.min_dist, len(points),
                 users)
    mlflow.log_params({f"umap.{k}": v for k, v in spec.to_dict().items()})
    reducer = fit_umap(points, spec)
    model = pickle.dumps(reducer)
    version = hashlib.sha1(json.dumps([head["model_version"], spec.to_dict(), len(points)])
                           .encode()).hexdigest()[:12]
    with tempfile.TemporaryDirectory() as tmp:
        with open(os.path.join(tmp, MODEL_FILE), "wb") as fh:
            fh.write(model)
        mlflow.log_artifacts(tmp, MANIFOLD_ARTIFACT)
    if not ctx.lake.exists(MODELS_TABLE) or not ctx.lake.read(MODELS_TABLE).where(
            F.col("model_version") == version).limit(1).count():
        entry = (version, "umap", datetime.now(timezone.utc).replace(tzinfo=None),
                 f"runs:/{ctx.run_id}/{MANIFOLD_ARTIFACT}", head["feature_set_version"],
                 int(head["dim"]), spec.n_components, None, head["model_version"])
        ctx.lake.append(ctx.spark.createDataFrame([entry], _ENTRY_SCHEMA), MODELS_TABLE)
    mlflow.set_tag("manifold_version", version)
    ctx.metric("umap_sample", len(points))
    space = project(embeddings.select("user_id", "embedding"), model)
    return space, version, reducer.embedding_.astype(np.float64)
