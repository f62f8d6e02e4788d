"""Deep embedded clustering math (Xie et al. 2016): soft assignments, the sharpened target
distribution, and the final hard assignment of every user in Spark.

DEC / IDEC refinement: the pre-trained encoder fine-tuned with the clustering loss, trained
by Horovod ranks launched on Spark, each reading its own Petastorm shard (as pre-training).

The clustering layer holds the centres, initialised from K-Means on the embeddings. Each
step minimises KL(P || Q) between the soft assignments Q (Student's t kernel) and the
target P (Q sharpened and divided by the cluster frequencies f_j = Σ_i q_ij); IDEC also
keeps the autoencoder's reconstruction loss, L = L_rec + gamma * KL. P is recomputed over
the whole data set every ``update_interval`` steps, not per mini-batch: each rank computes
Q on its shard, and the frequencies and the count of points that changed cluster are
summed across ranks (allreduce). Training stops when fewer than ``tol`` of the points
changed cluster between two updates, or after ``max_steps``.


``segment.method: dec|idec``: the K-Means centres and the encoder refined together with the
clustering loss (:func:`refine`); users are then assigned to the nearest refined centre."""
from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from persona.training.horovod import init_rank, rank_dataset, run_on_ranks, steps_per_epoch


def soft_assignment(z: np.ndarray, centers: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """q_ij: Student's t kernel between embedding i and centre j, normalised over j."""
    d2 = ((z[:, None, :] - centers[None, :, :]) ** 2).sum(axis=2)
    q = (1.0 + d2 / alpha) ** (-(alpha + 1.0) / 2.0)
    return q / q.sum(axis=1, keepdims=True)


def target_distribution(q: np.ndarray, frequencies: np.ndarray) -> np.ndarray:
    """p_ij ∝ q_ij² / f_j, where f_j = Σ_i q_ij over the whole data set (all ranks)."""
    weight = q ** 2 / frequencies[None, :]
    return weight / weight.sum(axis=1, keepdims=True)


def label_change(previous: np.ndarray | None, current: np.ndarray) -> int:
    """How many points changed cluster since the last update (all of them the first time)."""
    return len(current) if previous is None else int((previous != current).sum())


def nearest_center(column: str, centers: list[list[float]]) -> Column:
    """0-based index of the centre nearest to the array ``column`` (the argmax of q)."""
    def squared(center):
        diffs = F.zip_with(F.col(column), F.array(*[F.lit(float(v)) for v in center]),
                           lambda a, b: (a - b) * (a - b))
        return F.aggregate(diffs, F.lit(0.0).cast("double"), lambda acc, x: acc + x)

    # Structs compare field by field: the smallest (distance, index) pair wins.
    pairs = F.array(*[F.struct(squared(c).alias("d"), F.lit(j).alias("j"))
                      for j, c in enumerate(centers)])
    return F.array_min(pairs).getField("j").cast("int")


METHODS = ("dec", "idec")


@dataclass
class DecSpec:
    """Refinement settings, from ``segment.dec.*``."""

    method: str  # dec or idec
    alpha: float  # degrees of freedom of the Student's t kernel
    gamma: float  # IDEC: weight of the clustering loss beside the reconstruction
    optimizer: str  # adam, or sgd (momentum 0.9)
    learning_rate: float
    batch_size: int
    update_interval: int  # steps between two recomputations of P
    max_steps: int
    tol: float  # stop when this share of points or fewer changed cluster
    decoder_epochs: int  # IDEC: epochs fitting a decoder to the frozen encoder first
    seed: int
    threads_per_proc: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class DecResult:
    """What rank 0 hands back: the refined encoder and centres, and how training went."""

    encoder_json: str
    encoder_weights: list
    centers: list[list[float]]
    steps: int
    converged: bool
    history: list[dict] = field(default_factory=list)  # one entry per update of P
    seconds: float = 0.0


def _refine_rank(converter, input_dim: int, architecture: str, weights: list,
                 centers: list[list[float]], spec: DecSpec, rows: int):
    """Runs in every Horovod rank (a Spark task): refine on this rank's Petastorm shard."""
    import time

    import horovod.tensorflow as hvd
    import numpy as np

    from persona.segmentation.dec import label_change, soft_assignment, target_distribution

    _, tf = init_rank(spec.seed, spec.threads_per_proc)
    start = time.time()

    encoder = tf.keras.models.model_from_json(architecture)
    encoder.set_weights(weights)
    mu = tf.Variable(np.asarray(centers, dtype=np.float32), name="centers")
    hidden = [layer.units for layer in encoder.layers
              if isinstance(layer, tf.keras.layers.Dense)][:-1]
    decoder = None
    if spec.method == "idec":
        decoder = tf.keras.Sequential(
            [tf.keras.Input(shape=(mu.shape[1],))]
            + [tf.keras.layers.Dense(u, activation="relu") for u in reversed(hidden)]
            + [tf.keras.layers.Dense(input_dim)])
        hvd.broadcast_variables(decoder.variables, root_rank=0)

    def optimizer():
        lr = spec.learning_rate * hvd.size()
        if spec.optimizer == "sgd":
            return tf.keras.optimizers.SGD(lr, momentum=0.9)
        return tf.keras.optimizers.Adam(lr)

    def soft(z):
        d2 = tf.reduce_sum(tf.square(tf.expand_dims(z, 1) - mu), axis=2)
        q = tf.pow(1.0 + d2 / spec.alpha, -(spec.alpha + 1.0) / 2.0)
        return q / tf.reduce_sum(q, axis=1, keepdims=True)

    log = (lambda msg: print(f"persona segment | {spec.method} {msg}", file=sys.stderr,
                             flush=True)) if hvd.rank() == 0 else (lambda msg: None)
    epoch_steps = steps_per_epoch(rows, spec.batch_size, hvd.size())
    columns = {"features": input_dim, "row": None}

    with rank_dataset(converter, spec.batch_size, columns, spec.seed) as stream:
        batches = iter(stream)

        if decoder is not None and spec.decoder_epochs > 0:
            warm_opt = optimizer()

            @tf.function
            def warm_step(x, first):
                with tf.GradientTape() as tape:
                    loss = tf.reduce_mean(tf.square(decoder(encoder(x, training=False)) - x))
                tape = hvd.DistributedGradientTape(tape)
                grads = tape.gradient(loss, decoder.trainable_variables)
                warm_opt.apply_gradients(zip(grads, decoder.trainable_variables))
                if first:
                    hvd.broadcast_variables(warm_opt.variables(), root_rank=0)
                return hvd.allreduce(loss)

            for epoch in range(spec.decoder_epochs):
                for s in range(epoch_steps):
                    loss = warm_step(next(batches)[0], epoch == 0 and s == 0)
                log(f"decoder warm-up epoch {epoch + 1}/{spec.decoder_epochs} "
                    f"reconstruction {float(loss):.5f}")

        train_vars = encoder.trainable_variables + [mu]
        if decoder is not None:
            train_vars += decoder.trainable_variables
        opt = optimizer()

        @tf.function
        def train_step(x, p, first):
            with tf.GradientTape() as tape:
                z = encoder(x, training=False)
                q = soft(z)
                kl = tf.reduce_mean(tf.reduce_sum(p * tf.math.log(p / q), axis=1))
                rec = (tf.reduce_mean(tf.square(decoder(z) - x)) if decoder is not None
                       else tf.constant(0.0))
                loss = rec + spec.gamma * kl if decoder is not None else kl
            tape = hvd.DistributedGradientTape(tape)
            grads = tape.gradient(loss, train_vars)
            opt.apply_gradients(zip(grads, train_vars))
            if first:
                hvd.broadcast_variables(opt.variables(), root_rank=0)
            return hvd.allreduce(kl), hvd.allreduce(rec)

        def full_pass():
            """Q over this rank's whole shard, sorted by row id."""
            ids, qs = [np.zeros(0, dtype=np.int64)], [np.zeros((0, mu.shape[0]), np.float32)]
            with rank_dataset(converter, spec.batch_size * 4, columns, one_pass=True) as ds:
                for x, row in ds:
                    z = encoder(x, training=False).numpy()
                    qs.append(soft_assignment(z, mu.numpy(), spec.alpha).astype(np.float32))
                    ids.append(row.numpy())
            ids, q = np.concatenate(ids), np.concatenate(qs)
            order = np.argsort(ids)
            return ids[order], q[order]

        history, previous, converged, step = [], None, False, 0
        kl = rec = tf.constant(0.0)
        while True:
            if step % spec.update_interval == 0:
                ids, q = full_pass()
                frequencies = hvd.allreduce(tf.constant(q.sum(axis=0), tf.float64),
                                            op=hvd.Sum).numpy()
                p = target_distribution(q.astype(np.float64), frequencies).astype(np.float32)
                labels = q.argmax(axis=1)
                counts = hvd.allreduce(tf.constant([label_change(previous, labels), len(labels)],
                                                   tf.float64), op=hvd.Sum).numpy()
                delta = float(counts[0] / max(counts[1], 1.0))
                previous = labels
                history.append({"step": step, "delta_label": delta, **(
                    {"kl": float(kl), "reconstruction": float(rec)} if step else {})})
                log(f"step {step}: {delta:.2%} of points changed cluster" + (
                    f", KL {float(kl):.5f}, reconstruction {float(rec):.5f}" if step else ""))
                if step > 0 and delta < spec.tol:
                    converged = True
                    break
            if step >= spec.max_steps:
                break
            x, row = next(batches)
            rows_p = p[np.searchsorted(ids, row.numpy())]
            kl, rec = train_step(x, tf.constant(rows_p), step == 0)
            step += 1

    if hvd.rank() != 0:
        return None
    return DecResult(encoder.to_json(), encoder.get_weights(), mu.numpy().tolist(), step,
                     converged, history, time.time() - start)


def refine(spark: SparkSession, features: DataFrame, architecture: str, weights: list,
           centers: list[list[float]], spec: DecSpec, num_proc: int,
           cache_url: str) -> DecResult:
    """Refine the encoder and ``centers`` on the ``features`` column with ``num_proc`` ranks.

    Rows get an id, to look up their target in P.
    """
    if spec.method not in METHODS:
        raise ValueError(f"unknown method {spec.method!r}")
    rows = features.select(F.monotonically_increasing_id().alias("row"), "features")
    input_dim = len(features.select("features").first()[0])
    return run_on_ranks(spark, rows, _refine_rank,
                        (input_dim, architecture, weights, centers, spec), num_proc, cache_url,
                        spec.seed)[0]


def dec_spec(config, method: str) -> DecSpec:
    """``segment.dec.*`` with ``method`` (dec or idec)."""
    return DecSpec(method=method, seed=config.get("segment.seed"),
                   threads_per_proc=config.get("train.threads_per_proc"),
                   **config.section("segment.dec"))
