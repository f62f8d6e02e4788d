"""DP-SGD under Horovod, measured: on 2 Gloo ranks, the averaged gradient of the DP optimizer
is the clipped mean plus noise of std noise_multiplier * l2_norm_clip / global batch (the
single-process mechanism over the global batch), and the plain optimizer still averages the
ranks' exact gradients."""
import math
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow_privacy")
pytestmark = pytest.mark.stage

SIGMA, CLIP, BATCH, DIM, SCALE, STEPS = 1.3, 0.5, 8, 20_000, 4.0, 5


def _rank_gradients(sigma, clip, batch, dim, scale, steps):
    """In each rank: every example's gradient is (rank + 1) * scale along one unit vector
    (its norm above ``clip``); the allreduced gradients of the DP and of the plain optimizer."""
    from persona.training.horovod import distributed_adam, init_rank
    from persona.training.privacy import dp_distributed_adam

    hvd, tf = init_rank(seed=11, threads=1)
    direction = np.ones(dim, dtype=np.float32) / math.sqrt(dim)
    examples = tf.constant(np.tile(direction * scale * (hvd.rank() + 1), (batch, 1)))
    weights = tf.Variable(tf.zeros(dim))

    def gradient(optimizer, per_example: bool):
        with tf.GradientTape() as tape:
            loss = tf.linalg.matvec(examples, weights)  # one value per example
            if not per_example:
                loss = tf.reduce_mean(loss)
        return optimizer._compute_gradients(loss, [weights], tape=tape)[0][0].numpy()

    private = dp_distributed_adam(hvd, 0.001, sigma, clip, batch)
    noised = np.stack([gradient(private, True) for _ in range(steps)])
    plain = gradient(distributed_adam(hvd, tf, 0.001), False)
    return noised, plain, direction


def test_averaged_update_is_the_single_process_mechanism():
    import cloudpickle
    import horovod

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    results = horovod.run(_rank_gradients, args=(SIGMA, CLIP, BATCH, DIM, SCALE, STEPS),
                          np=2, use_gloo=True, verbose=0)
    (noised, plain, direction), (noised_1, plain_1, _) = results
    # Every rank applies the same averaged gradient.
    np.testing.assert_array_equal(noised, noised_1)
    np.testing.assert_array_equal(plain, plain_1)
    # Plain: the mean of the ranks' exact gradients (scale and 2 * scale).
    np.testing.assert_allclose(plain, 1.5 * SCALE * direction, rtol=1e-5)
    # DP: each example clipped to CLIP along the direction, plus noise over the global batch.
    residual = noised - CLIP * direction
    expected = SIGMA * CLIP / (2 * BATCH)
    # 100,000 draws: the sample std is within 1% of the true one (about 4.5 standard errors);
    # the full noise in each rank, or the same noise in both, would give sqrt(2) times it.
    assert residual.std() == pytest.approx(expected, rel=0.01)
    assert abs(residual.mean()) < 5 * expected / math.sqrt(residual.size)
    # Each step draws new noise.
    assert abs(np.corrcoef(residual[0], residual[1])[0, 1]) < 0.02
