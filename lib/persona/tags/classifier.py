"""The tag classifiers: small Keras DNNs trained by Horovod ranks through Petastorm.

Training goes through :func:`persona.training.horovod.run_on_ranks`, like the autoencoder:
one job for every tag (:func:`train_classifiers`), whose ranks share out the classifiers
(tag i to rank i mod ranks). Each classifier is trained whole by one rank, on all its
training users: the networks are small enough that averaging gradients between ranks after
every batch costs more than it saves, so the ranks train different tags side by side.
Each tag's training data has ``x`` (array<float>, the scaled inputs), ``y`` (class index)
and ``weight`` (the class weight, so that rare classes count as much as common ones).
Training stops when the weighted loss on the validation users has not improved for
``patience`` epochs, and keeps the weights of the best epoch.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from pyspark.sql import DataFrame, SparkSession

from persona.training.horovod import (epoch_log, init_rank, rank_dataset, run_on_ranks,
                                      steps_per_epoch)


# Validation users scored per batch after each epoch. Keras scores them 32 at a time unless
# told otherwise: at 100,000 users, a quarter to a third of every epoch went to that.
VALIDATION_BATCH = 4096


@dataclass
class ClassifierSpec:
    """Shape and training settings of one tag's classifier (their defaults are those of
    ``tags.<name>.*`` and ``train.threads_per_proc``)."""

    input_dim: int
    classes: int
    hidden: list[int]
    dropout: float
    learning_rate: float
    epochs: int  # at most; early stopping on the validation loss decides
    patience: int
    batch_size: int
    seed: int
    threads_per_proc: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ClassifierResult:
    """What a rank hands back for a tag: per-epoch (weighted) losses on the training and validation
    users, the epoch whose weights were kept, and the trained model."""

    losses: list[float]
    validation_losses: list[float]
    best_epoch: int
    model_json: str
    weights: list
    seconds: float


def build_classifier(spec: ClassifierSpec):
    """Dense ReLU layers with dropout, then a softmax over the classes."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(spec.input_dim,), name="x")
    x = inputs
    for i, units in enumerate(spec.hidden):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if spec.dropout:
            x = tf.keras.layers.Dropout(spec.dropout, name=f"dropout_{i}")(x)
    outputs = tf.keras.layers.Dense(spec.classes, activation="softmax", name="proba")(x)
    return tf.keras.Model(inputs, outputs, name="tag_classifier")


@dataclass
class ClassifierJob:
    """One tag's share of the training job: its classifier, its training users (``x``,
    ``y``, ``weight``) and the validation arrays of :func:`validation_arrays`."""

    name: str
    spec: ClassifierSpec
    train: DataFrame
    validation: tuple


def _fit_one(tf, converter, spec: ClassifierSpec, name: str, validation: tuple, rows: int):
    """One classifier, trained whole in this rank: weighted cross-entropy on every training
    user, seeded by the tag alone (whichever rank trains it, it comes out the same)."""
    import time

    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(spec.seed)
    model = build_classifier(spec)
    model.compile(optimizer=tf.keras.optimizers.Adam(spec.learning_rate),
                  loss="sparse_categorical_crossentropy")
    stop = tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec.patience,
                                            restore_best_weights=True)
    start = time.time()
    with rank_dataset(converter, spec.batch_size,
                      {"x": spec.input_dim, "y": None, "weight": None}, spec.seed,
                      sharded=False) as dataset:
        history = model.fit(dataset, steps_per_epoch=steps_per_epoch(rows, spec.batch_size, 1),
                            epochs=spec.epochs, validation_data=validation,
                            validation_batch_size=VALIDATION_BATCH, verbose=0,
                            callbacks=[epoch_log(tf, f"persona tag {name}", spec.epochs), stop])
    val = [float(v) for v in history.history["val_loss"]]
    return ClassifierResult([float(v) for v in history.history["loss"]], val,
                            val.index(min(val)) + 1, model.to_json(), model.get_weights(),
                            time.time() - start)


def rank_share(jobs: int, ranks: int, rank: int) -> list[int]:
    """The indices of the jobs ``rank`` trains: job i goes to rank i mod ``ranks``."""
    return list(range(rank, jobs, ranks))


def _train_ranks(converters, jobs: list[tuple], rows: list[int]):
    """Runs in every Horovod rank: this rank's share of the classifiers, one after another;
    ``{job index: ClassifierResult}``."""
    first = jobs[0][0]
    hvd, tf = init_rank(first.seed, first.threads_per_proc)
    return {i: _fit_one(tf, converters[i], *jobs[i], rows[i])
            for i in rank_share(len(jobs), hvd.size(), hvd.rank())}


def validation_arrays(validation: DataFrame, limit: int) -> tuple:
    """``(x, y, weight)`` numpy arrays of at most ``limit`` validation users, which every
    rank scores after each epoch (a bounded sample brought to the driver)."""
    import numpy as np

    rows = validation.select("x", "y", "weight").limit(limit).collect()
    return (np.array([r["x"] for r in rows], dtype=np.float32),
            np.array([r["y"] for r in rows], dtype=np.int32),
            np.array([r["weight"] for r in rows], dtype=np.float32))


def train_classifiers(spark: SparkSession, jobs: list[ClassifierJob], num_proc: int,
                       cache_url: str) -> list[ClassifierResult]:
    """Train every job's classifier in one Horovod job of ``num_proc`` ranks, the ranks
    sharing out the jobs (:func:`rank_share`), each classifier stopping early on its own
    validation users; results in the jobs' order.

    One launch of the ranks (and of TensorFlow in them) serves every tag.
    """
    shares = run_on_ranks(spark, [j.train.select("x", "y", "weight") for j in jobs],
                          _train_ranks, ([(j.spec, j.name, j.validation) for j in jobs],),
                          num_proc, cache_url, jobs[0].spec.seed)
    results = {i: r for share in shares for i, r in share.items()}
    return [results[i] for i in range(len(jobs))]
