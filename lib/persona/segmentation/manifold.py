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

import os
import pickle
from dataclasses import asdict, dataclass
from typing import Iterator

import mlflow
import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType

from persona.errors import PersonaError
from persona.lake.versions import content_version


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


MANIFOLD_ARTIFACT = "manifold"
MODEL_FILE = "umap.pkl"


@dataclass
class UmapSpec:
    """UMAP settings, from ``segment.umap.*`` and ``segment.seed``."""

    n_components: int
    n_neighbors: int
    min_dist: float
    sample: int  # users the manifold is learned from
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


def manifold_method(config) -> str:
    """``segment.manifold``: ``none`` (default) or ``umap``."""
    return config.get("segment.manifold")


def umap_spec(config) -> UmapSpec:
    """``segment.umap.*`` and ``segment.seed``."""
    return UmapSpec(
        n_components=config.get("segment.umap.n_components"),
        n_neighbors=config.get("segment.umap.n_neighbors"),
        min_dist=config.get("segment.umap.min_dist"),
        sample=config.get("segment.umap.sample"),
        seed=config.get("segment.seed"),
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


@dataclass
class Manifold:
    """A UMAP model learned from a sample of users: the pickled model, the coordinates of
    the sample on it (where segments are fitted), and its version."""

    model: bytes
    points: np.ndarray
    version: str

    def project(self, df: DataFrame) -> DataFrame:
        """``df`` with its ``embedding`` mapped onto the manifold, in Spark."""
        return project(df, self.model)


def learn_manifold(embeddings: DataFrame, spec: UmapSpec) -> Manifold:
    """The manifold of ``embeddings`` (user_id, embedding, model_version) learned from a
    sample of at most ``spec.sample`` users; its version follows the encoder and ``spec``."""
    encoder = embeddings.select("model_version").first()[0]
    points = sample_points(embeddings, spec.sample, spec.seed)
    reducer = fit_umap(points, spec)
    version = content_version([encoder, spec.to_dict(), len(points)])
    return Manifold(pickle.dumps(reducer), reducer.embedding_.astype(np.float64), version)
