"""Distributed training: Horovod ranks launched on Spark, each reading its shard via Petastorm.

:func:`train_autoencoder` is the one interface the pipeline uses (data in, trained
weights out), so another distributor could be put beside Horovod without touching
the stages.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from pyspark.sql import DataFrame, SparkSession

from persona.model import AutoencoderSpec, build_autoencoder


@dataclass
class TrainResult:
    """What rank 0 hands back: per-epoch losses and the encoder (architecture + weights)."""

    losses: list[float]
    encoder_json: str
    encoder_weights: list
    seconds: float


def _train_rank(converter, spec: AutoencoderSpec, rows: int):
    """Runs in every Horovod rank (a Spark task): train on this rank's Petastorm shard."""
    import time

    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    hvd.init()
    tf.get_logger().setLevel("ERROR")
    if spec.threads_per_proc:
        tf.config.threading.set_intra_op_parallelism_threads(spec.threads_per_proc)
        tf.config.threading.set_inter_op_parallelism_threads(spec.threads_per_proc)
    tf.keras.utils.set_random_seed(spec.seed + hvd.rank())
    autoencoder, encoder = build_autoencoder(spec)
    optimizer = hvd.DistributedOptimizer(
        tf.keras.optimizers.Adam(spec.learning_rate * hvd.size()))
    autoencoder.compile(optimizer=optimizer, loss="mse")
    steps = max(1, math.ceil(rows / (spec.batch_size * hvd.size())))

    class EpochLog(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if hvd.rank() == 0:
                print(f"persona train | epoch {epoch + 1}/{spec.epochs} "
                      f"loss {logs['loss']:.5f}", file=sys.stderr, flush=True)

    callbacks = [hvd.callbacks.BroadcastGlobalVariablesCallback(0),
                 hvd.callbacks.MetricAverageCallback(), EpochLog()]
    start = time.time()
    with converter.make_tf_dataset(batch_size=spec.batch_size, cur_shard=hvd.rank(),
                                   shard_count=hvd.size(), workers_count=1,
                                   shuffling_queue_capacity=spec.batch_size * 8,
                                   seed=spec.seed) as dataset:
        dataset = dataset.map(lambda batch: tf.reshape(batch.features, [-1, spec.input_dim]))
        dataset = dataset.map(lambda x: (x, x))
        history = autoencoder.fit(dataset, steps_per_epoch=steps, epochs=spec.epochs,
                                  callbacks=callbacks, verbose=0)
    if hvd.rank() != 0:
        return None
    return TrainResult([float(v) for v in history.history["loss"]], encoder.to_json(),
                       encoder.get_weights(), time.time() - start)


def train_autoencoder(spark: SparkSession, features: DataFrame, spec: AutoencoderSpec,
                      num_proc: int, cache_url: str) -> TrainResult:
    """Train on the ``features`` column (array<float>) with ``num_proc`` Horovod ranks."""
    import horovod.spark
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_url)
    converter = make_spark_converter(features.select("features"), dtype="float32")
    try:
        results = horovod.spark.run(_train_rank, args=(converter, spec, len(converter)),
                                    num_proc=num_proc, use_gloo=True, verbose=0,
                                    stdout=sys.stderr, stderr=sys.stderr)
    finally:
        converter.delete()
    return next(r for r in results if r is not None)
