"""Distributed inference: the encoder applied to every user in Spark (pandas UDF)."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType


def encode(df: DataFrame, architecture: str, weights: list, column: str = "features",
           output: str = "embedding") -> DataFrame:
    """Add ``output`` (array<float>): the encoder's latent vector of ``column``.

    The weights are broadcast once; each Spark task builds the Keras model once and
    encodes its partition in Arrow batches.
    """
    weights_bc = df.sparkSession.sparkContext.broadcast(weights)

    @F.pandas_udf(ArrayType(FloatType()))
    def _encode(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(1)
        model = tf.keras.models.model_from_json(architecture)
        model.set_weights(weights_bc.value)
        for batch in batches:
            x = np.stack(batch.to_numpy()).astype(np.float32)
            z = model(x, training=False).numpy()
            yield pd.Series(list(z))

    return df.withColumn(output, _encode(F.col(column)))
