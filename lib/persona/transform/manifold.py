"""Distributed mapping onto a learned manifold: a fitted UMAP model applied to every user in
Spark (pandas UDF)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType


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
