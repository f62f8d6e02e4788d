"""The autoencoder's sequence branch: which inputs it reads, and that it survives JSON; the
shuffling of training rows before they reach the Horovod ranks; the lifetime of a Horovod task."""
import numpy as np
import pytest

from persona.training.autoencoder import AutoencoderSpec, build_autoencoder

pytestmark = pytest.mark.unit

DENSE, STEPS, STEP = 6, 4, 3


def encode_both(encoder_kind: str):
    """Latents of two inputs that differ only in the order of their sequence steps."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    spec = AutoencoderSpec(input_dim=DENSE + STEPS * STEP, hidden=[8], latent_dim=3,
                           sequence_steps=STEPS, sequence_step_size=STEP,
                           sequence_encoder=encoder_kind, sequence_units=5)
    autoencoder, encoder = build_autoencoder(spec)
    steps = np.eye(STEPS, STEP, dtype=np.float32)
    x = np.concatenate([np.ones(DENSE, np.float32), steps.ravel()])
    reordered = np.concatenate([np.ones(DENSE, np.float32), steps[::-1].ravel()])
    z = encoder(np.stack([x, reordered]), training=False).numpy()
    reloaded = tf.keras.models.model_from_json(encoder.to_json())
    reloaded.set_weights(encoder.get_weights())
    assert reloaded(np.stack([x, reordered]), training=False).numpy() == pytest.approx(z)
    assert autoencoder.output_shape == (None, DENSE + STEPS * STEP)
    return encoder, z


@pytest.mark.parametrize("kind,layer", [("gru", "sequence_gru"), ("conv", "sequence_conv")])
def test_sequence_branch_reads_the_order_of_events(kind, layer):
    encoder, z = encode_both(kind)
    assert layer in [l.name for l in encoder.layers]
    assert not np.allclose(z[0], z[1])


def test_dense_sequence_encoder_has_no_branch():
    encoder, _ = encode_both("dense")
    assert not any(l.name.startswith("sequence") for l in encoder.layers)
    assert encoder.get_layer("enc_0").input_shape == (None, DENSE + STEPS * STEP)


def test_unknown_sequence_encoder_is_a_clear_error():
    from persona.config import Config
    from persona.errors import PersonaError
    from persona.stages.train import spec_from_config

    with pytest.raises(PersonaError, match="train.sequence_encoder must be one of gru, conv"):
        Config({"train": {"sequence_encoder": "lstm"}})
    config = Config({"train": {"sequence_encoder": "conv"}})
    spec = spec_from_config(config, 10, (2, 3))
    assert (spec.sequence_steps, spec.sequence_step_size, spec.sequence_encoder) == (2, 3, "conv")


def test_training_rows_are_shuffled_across_and_within_partitions(spark):
    """Rows stored in order (here by value) reach the ranks in a random order: every row
    once, a shard per partition, no shard in its stored order, the same order again for
    the same seed."""
    from persona.training.horovod import shuffled

    ordered = spark.range(1000).coalesce(1)
    out = shuffled(ordered, 2, seed=3)
    shards = out.rdd.glom().map(lambda rows: [r["id"] for r in rows]).collect()
    assert len(shards) == 2 and all(300 < len(s) < 700 for s in shards)
    assert sorted(i for s in shards for i in s) == list(range(1000))
    for shard in shards:
        # Rank correlation of position and value: 1 in stored order, near 0 when shuffled.
        assert abs(np.corrcoef(np.argsort(np.argsort(shard)), np.arange(len(shard)))[0, 1]) < 0.2
    assert shuffled(ordered, 2, seed=3).rdd.glom().collect() == out.rdd.glom().collect()


def test_a_task_lifetime_is_counted_from_its_command_start():
    """A command that outlives the task's minimum lifetime leaves no time to wait when it
    ends (Horovod itself would start the lifetime then, and idle it out)."""
    import os
    import threading

    from horovod.runner.common.util import secret
    from horovod.spark.task.task_service import SparkTaskService

    from persona.training.horovod import _count_lifetime_from_start

    _count_lifetime_from_start()
    service = SparkTaskService(0, secret.make_secret_key(), None, 0.5, 0)
    try:
        service._run_command("sleep 0.8", dict(os.environ), threading.Event())
        assert service._minimum_command_lifetime.remaining() == 0
    finally:
        service.shutdown()
