"""Distributed training: Horovod ranks launched on Spark, each reading its shard via Petastorm.

:func:`run_on_ranks` is the one distributed-training interface (a DataFrame and a
per-rank function in, every rank's result out). :func:`train_autoencoder` and
:func:`persona.tags.classifier.train_classifiers` are built on it, so another distributor could
be put beside Horovod without touching the stages.
"""
from __future__ import annotations

import logging
import math
import secrets
import sys
from contextlib import contextmanager
from dataclasses import dataclass, replace

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from persona.training.autoencoder import AutoencoderSpec, build_autoencoder


@dataclass
class TrainResult:
    """What rank 0 hands back: per-epoch losses and the encoder (architecture + weights)."""

    losses: list[float]
    encoder_json: str
    encoder_weights: list
    seconds: float


def init_rank(seed: int, threads: int):
    """Start Horovod in this rank, seed it and bound TensorFlow's threads; ``(hvd, tf)``."""
    import horovod.tensorflow.keras as hvd
    import tensorflow as tf

    hvd.init()
    tf.get_logger().setLevel("ERROR")
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.keras.utils.set_random_seed(seed + hvd.rank())
    return hvd, tf


def distributed_adam(hvd, tf, learning_rate: float):
    """Adam with the learning rate scaled by the number of ranks, gradients averaged."""
    return hvd.DistributedOptimizer(tf.keras.optimizers.Adam(learning_rate * hvd.size()))


def epoch_log(tf, prefix: str, epochs: int):
    """A Keras callback that logs each epoch's metrics to stderr."""

    class EpochLog(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            values = " ".join(f"{k} {v:.5f}" for k, v in (logs or {}).items())
            print(f"{prefix} | epoch {epoch + 1}/{epochs} {values}", file=sys.stderr,
                  flush=True)

    return EpochLog()


def rank_callbacks(hvd, tf, prefix: str, epochs: int) -> list:
    """Broadcast rank 0's initial weights, average metrics, log each epoch from rank 0."""
    return [hvd.callbacks.BroadcastGlobalVariablesCallback(0),
            hvd.callbacks.MetricAverageCallback()] + (
        [epoch_log(tf, prefix, epochs)] if hvd.rank() == 0 else [])


def steps_per_epoch(rows: int, batch_size: int, ranks: int) -> int:
    """Batches each rank runs per epoch so that all ranks together see ``rows`` once."""
    return max(1, math.ceil(rows / (batch_size * ranks)))


@contextmanager
def rank_dataset(converter, batch_size: int, columns: dict, seed: int | None = None,
                 one_pass: bool = False, sharded: bool = True):
    """This rank's shard of ``converter`` as a ``tf.data.Dataset`` of tuples, one tensor per
    entry of ``columns`` (name: width): Petastorm's (None, None) batches of an array column
    reshaped to [-1, width], a scalar column (width None) to [-1].

    Endless and shuffled through a buffer of 8 batches (``seed``); ``one_pass``: a single
    pass in storage order; ``sharded=False``: every row, not this rank's shard.
    """
    import horovod.tensorflow as hvd
    import tensorflow as tf

    order = (dict(num_epochs=1, shuffle_row_groups=False) if one_pass
             else dict(shuffling_queue_capacity=batch_size * 8, seed=seed))
    if sharded:
        shard = dict(cur_shard=hvd.rank(), shard_count=hvd.size())
    else:  # on purpose: Petastorm's warning that the reader is not this rank's shard is noise
        shard = {}
        logging.getLogger("petastorm.spark.spark_dataset_converter").setLevel(logging.ERROR)
    with converter.make_tf_dataset(batch_size=batch_size, workers_count=1, **shard,
                                   **order) as dataset:
        yield dataset.map(lambda batch: tuple(
            tf.reshape(getattr(batch, name), [-1, width] if width else [-1])
            for name, width in columns.items()))


def _train_rank(converter, spec: AutoencoderSpec, rows: int):
    """Runs in every Horovod rank (a Spark task): train on this rank's Petastorm shard."""
    import time

    hvd, tf = init_rank(spec.seed, spec.threads_per_proc)
    autoencoder, encoder = build_autoencoder(spec)
    if spec.dp_noise_multiplier is None:
        autoencoder.compile(optimizer=distributed_adam(hvd, tf, spec.learning_rate), loss="mse")
    else:
        from persona.training.privacy import dp_distributed_adam

        # DP-SGD clips each example's gradient: the loss stays one value per example.
        autoencoder.compile(
            optimizer=dp_distributed_adam(hvd, spec.learning_rate, spec.dp_noise_multiplier,
                                          spec.dp_l2_norm_clip, spec.batch_size),
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.NONE))
    steps = steps_per_epoch(rows, spec.batch_size, hvd.size())
    callbacks = rank_callbacks(hvd, tf, "persona train", spec.epochs)
    start = time.time()
    with rank_dataset(converter, spec.batch_size, {"features": spec.input_dim},
                      spec.seed) as dataset:
        history = autoencoder.fit(dataset.map(lambda x: (x, x)), steps_per_epoch=steps,
                                  epochs=spec.epochs, callbacks=callbacks, verbose=0)
    if hvd.rank() != 0:
        return None
    return TrainResult([float(v) for v in history.history["loss"]], encoder.to_json(),
                       encoder.get_weights(), time.time() - start)


def shuffled(data: DataFrame, partitions: int, seed: int) -> DataFrame:
    """The rows of ``data`` in a random order, spread evenly over ``partitions`` partitions.

    Tables are often stored in an order that means something (by id, by signup date, by
    class): read as they are, a rank's mini-batches would each hold similar rows, and the
    shuffling buffer of a reader is far smaller than a file.
    """
    key = F.rand(seed).alias("_shuffle")
    return (data.select("*", key).repartition(partitions, "_shuffle")
            .sortWithinPartitions("_shuffle").drop("_shuffle"))


def _task_mapper(driver_addresses, settings, use_gloo, is_elastic):
    """Horovod's Spark task function (``horovod.spark.runner._make_mapper``), with each
    task's minimum command lifetime counted from the start of its rank's process.

    Horovod 0.28.1 keeps a task alive for ``MINIMUM_COMMAND_LIFETIME_S`` (3 s), so that the
    driver can still ask for the exit code of a command that ended at once; it documents the
    lifetime as counted from the command's start but starts the clock when the command ends,
    so that every launch idles 3 s after its ranks are done.
    """
    from horovod.spark import runner

    key = settings.key

    def mapper(index, _):
        _count_lifetime_from_start()
        yield runner._task_fn(index, driver_addresses, key, settings, use_gloo, is_elastic)

    return mapper


def _count_lifetime_from_start() -> None:
    """Start the minimum command lifetime of this process's Spark task services with the
    command, as ``SparkTaskService.wait_for_command_termination`` documents it."""
    from horovod.runner.common.service.task_service import BasicTaskService
    from horovod.runner.common.util.timeout import Timeout
    from horovod.spark.task.task_service import SparkTaskService

    if getattr(SparkTaskService, "_persona_lifetime", False):
        return

    def _run_command(self, command, env, event, stdout=None, stderr=None, index=None,
                     prefix_output_with_timestamp=False):
        if self._minimum_command_lifetime_s is not None:
            self._minimum_command_lifetime = Timeout(self._minimum_command_lifetime_s,
                                                     message="Just measuring runtime")
        BasicTaskService._run_command(self, command, env, event, stdout, stderr, index,
                                      prefix_output_with_timestamp)

    SparkTaskService._run_command = _run_command
    SparkTaskService._persona_lifetime = True


def run_on_ranks(spark: SparkSession, data: DataFrame | list[DataFrame], rank_fn, args: tuple,
                 num_proc: int, cache_url: str, seed: int = 0):
    """Run ``rank_fn(converter, *args, rows)`` in ``num_proc`` Horovod ranks on Spark.

    ``data`` is shuffled (:func:`shuffled`, one partition per rank, so that every rank has a
    shard) and materialised once by Petastorm under ``cache_url`` (floats as float32); each
    rank reads through ``converter`` (its own shard, or every row: :func:`rank_dataset`). A
    list of DataFrames gives ``rank_fn`` a list of converters and a list of row counts, for
    one job that trains several models.
    Returns every rank's result, in rank order.
    """
    import horovod.spark
    from horovod.spark import runner
    from petastorm.spark import SparkDatasetConverter, make_spark_converter

    runner._make_mapper = _task_mapper

    spark.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache_url)
    frames = data if isinstance(data, list) else [data]
    converters = []
    try:
        for frame in frames:
            converters.append(make_spark_converter(shuffled(frame, num_proc, seed),
                                                   dtype="float32"))
        rows = [len(c) for c in converters]
        shared = (converters, *args, rows) if isinstance(data, list) else \
            (converters[0], *args, rows[0])
        results = horovod.spark.run(rank_fn, args=shared, num_proc=num_proc, use_gloo=True,
                                    verbose=0, stdout=sys.stderr, stderr=sys.stderr)
    finally:
        for converter in converters:
            converter.delete()
    return results


def train_autoencoder(spark: SparkSession, features: DataFrame, spec: AutoencoderSpec,
                      num_proc: int, cache_url: str) -> TrainResult:
    """Train on the ``features`` column (array<float>) with ``num_proc`` Horovod ranks.

    With DP-SGD, ``spec.seed`` is replaced by a secret one (weights, batches, noise): a noise
    that could be drawn again from the configuration would hide nothing.
    """
    if spec.dp_noise_multiplier is not None:
        spec = replace(spec, seed=secrets.randbits(31))
    return run_on_ranks(spark, features.select("features"), _train_rank, (spec,), num_proc,
                        cache_url, spec.seed)[0]
