"""The denoising autoencoder (Keras) and its encoder half."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class AutoencoderSpec:
    """Shape and training settings of the autoencoder, from ``train.*``."""

    input_dim: int
    hidden: list[int] = field(default_factory=list)
    latent_dim: int = 8
    noise: float = 0.1
    learning_rate: float = 0.002
    epochs: int = 30
    batch_size: int = 128
    seed: int = 7
    threads_per_proc: int = 1
    # The last sequence_steps * sequence_step_size inputs are a sequence of events; with
    # sequence_encoder gru or conv a recurrent or 1-D convolutional branch reads them,
    # with dense they go through the dense layers like every other input.
    sequence_steps: int = 0
    sequence_step_size: int = 0
    sequence_encoder: str = "gru"
    sequence_units: int = 16
    # DP-SGD (train.privacy): per-example clipping and Gaussian noise; None: plain Adam.
    dp_noise_multiplier: float | None = None
    dp_l2_norm_clip: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def build_autoencoder(spec: AutoencoderSpec):
    """Return ``(autoencoder, encoder)``: Gaussian input noise → dense encoder (beside a GRU
    or 1-D convolutional branch over the event sequence, when there is one) → latent →
    mirrored dense decoder → linear reconstruction of the whole input. The noise is active
    only in training."""
    import tensorflow as tf

    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=(spec.input_dim,), name="features")
    x = layers.GaussianNoise(spec.noise, name="input_noise")(inputs)
    branch = None
    sequence_dim = spec.sequence_steps * spec.sequence_step_size
    if sequence_dim and spec.sequence_encoder != "dense":
        steps = layers.Reshape((spec.sequence_steps, spec.sequence_step_size),
                               name="sequence")(x[:, spec.input_dim - sequence_dim:])
        x = x[:, :spec.input_dim - sequence_dim]
        if spec.sequence_encoder == "gru":
            branch = layers.GRU(spec.sequence_units, name="sequence_gru")(steps)
        else:
            branch = layers.Conv1D(spec.sequence_units, 3, padding="same", activation="relu",
                                   name="sequence_conv")(steps)
            branch = layers.GlobalMaxPooling1D(name="sequence_pool")(branch)
    for i, units in enumerate(spec.hidden):
        x = layers.Dense(units, activation="relu", name=f"enc_{i}")(x)
    if branch is not None:
        x = layers.Concatenate(name="fused")([x, branch])
    latent = layers.Dense(spec.latent_dim, name="latent")(x)
    x = latent
    for i, units in enumerate(reversed(spec.hidden)):
        x = layers.Dense(units, activation="relu", name=f"dec_{i}")(x)
    outputs = layers.Dense(spec.input_dim, name="reconstruction")(x)
    autoencoder = tf.keras.Model(inputs, outputs, name="autoencoder")
    encoder = tf.keras.Model(inputs, latent, name="encoder")
    return autoencoder, encoder
