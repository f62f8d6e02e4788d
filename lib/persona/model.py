"""The denoising autoencoder (Keras) and its encoder half."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class AutoencoderSpec:
    """Shape and training settings of the autoencoder, from ``train.*``."""

    input_dim: int
    hidden: list[int] = field(default_factory=lambda: [64, 32])
    latent_dim: int = 8
    noise: float = 0.1
    learning_rate: float = 0.002
    epochs: int = 30
    batch_size: int = 128
    seed: int = 7
    threads_per_proc: int = 1

    def to_dict(self) -> dict:
        return asdict(self)


def build_autoencoder(spec: AutoencoderSpec):
    """Return ``(autoencoder, encoder)``: Gaussian input noise → dense encoder → latent →
    mirrored dense decoder → linear reconstruction. The noise is active only in training."""
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(spec.input_dim,), name="features")
    x = tf.keras.layers.GaussianNoise(spec.noise, name="input_noise")(inputs)
    for i, units in enumerate(spec.hidden):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"enc_{i}")(x)
    latent = tf.keras.layers.Dense(spec.latent_dim, name="latent")(x)
    x = latent
    for i, units in enumerate(reversed(spec.hidden)):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"dec_{i}")(x)
    outputs = tf.keras.layers.Dense(spec.input_dim, name="reconstruction")(x)
    autoencoder = tf.keras.Model(inputs, outputs, name="autoencoder")
    encoder = tf.keras.Model(inputs, latent, name="encoder")
    return autoencoder, encoder
