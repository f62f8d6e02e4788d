"""Differentially private training (DP-SGD) under Horovod: the optimizer of each rank, its
share of the noise, and the privacy accountant (docs/privacy.md).

Each rank clips every one of its examples' gradients to ``l2_norm_clip``, sums them, adds
Gaussian noise of std ``l2_norm_clip * noise_multiplier / sqrt(ranks)`` and divides by its
batch size; Horovod's allreduce averages the ranks. The averaged update is then the
single-process DP-SGD update over the global batch with noise multiplier ``noise_multiplier``.
"""
from __future__ import annotations

import importlib.util
import math

from persona.errors import PersonaError


def require_dp_library() -> None:
    """Stop with one line when tensorflow-privacy (and its accountant) is not installed."""
    missing = [name for module, name in (("tensorflow_privacy", "tensorflow-privacy"),
                                         ("dp_accounting", "dp-accounting"))
               if importlib.util.find_spec(module) is None]
    if missing:
        raise PersonaError(f"train.privacy.noise_multiplier is set but {' and '.join(missing)} "
                           f"is not installed: install requirements.txt (make env)")


def rank_noise_multiplier(noise_multiplier: float, ranks: int) -> float:
    """The noise multiplier of each of ``ranks`` ranks whose averaged update carries
    ``noise_multiplier`` over the global batch: independent noises add up in variance."""
    return noise_multiplier / math.sqrt(ranks)


def dp_adam(l2_norm_clip: float, noise_multiplier: float, num_microbatches: int,
            learning_rate: float):
    """tensorflow-privacy's DP Keras Adam (``DPKerasAdamOptimizer``: the Gaussian sum query
    over per-microbatch clipped gradients), whose configuration also rebuilds it, as
    ``hvd.DistributedOptimizer`` does (the library's own ``get_config`` leaves the query out).
    """
    from tensorflow_privacy.privacy.dp_query.gaussian_query import GaussianSumQuery
    from tensorflow_privacy.privacy.optimizers.dp_optimizer_keras import GenericDPAdamOptimizer

    class DPKerasAdam(GenericDPAdamOptimizer):
        def __init__(self, l2_norm_clip, noise_multiplier, num_microbatches, **kwargs):
            kwargs.pop("global_state", None)
            super().__init__(GaussianSumQuery(l2_norm_clip, l2_norm_clip * noise_multiplier),
                             num_microbatches, **kwargs)
            self._dp_settings = {"l2_norm_clip": l2_norm_clip,
                                 "noise_multiplier": noise_multiplier}

        def get_config(self):
            return {**super().get_config(), **self._dp_settings}

    return DPKerasAdam(l2_norm_clip, noise_multiplier, num_microbatches,
                       learning_rate=learning_rate)


def dp_distributed_adam(hvd, learning_rate: float, noise_multiplier: float,
                        l2_norm_clip: float, batch_size: int):
    """DP Adam in every rank (one microbatch per example, this rank's share of the noise),
    the learning rate scaled by the number of ranks, the noised gradients averaged."""
    return hvd.DistributedOptimizer(dp_adam(
        l2_norm_clip, rank_noise_multiplier(noise_multiplier, hvd.size()), batch_size,
        learning_rate * hvd.size()))


def dp_epsilon(users: int, global_batch: int, steps: int, noise_multiplier: float,
               delta: float) -> float:
    """Epsilon of DP-SGD at ``delta`` (RDP accountant of dp-accounting, add-or-remove-one
    user): ``steps`` Gaussian mechanisms, each on a batch sampled with probability
    ``global_batch / users`` (Poisson sampling, the usual approximation of shuffled batches).
    """
    import dp_accounting

    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(global_batch / users,
                                            dp_accounting.GaussianDpEvent(noise_multiplier)),
        steps)
    return float(dp_accounting.rdp.RdpAccountant().compose(event).get_epsilon(delta))


def noise_for_epsilon(epsilon: float, users: int, global_batch: int, steps: int,
                      delta: float) -> float:
    """The smallest noise multiplier (to 0.1%) whose :func:`dp_epsilon` is at most
    ``epsilon``: epsilon falls as the noise grows, so bisect on a log scale."""
    low, high = 0.1, 1000.0
    if dp_epsilon(users, global_batch, steps, high, delta) > epsilon:
        raise PersonaError(f"epsilon {epsilon} is out of reach at delta {delta} with "
                           f"{steps} steps of {global_batch} of {users} users")
    while high / low > 1.001:
        middle = math.sqrt(low * high)
        if dp_epsilon(users, global_batch, steps, middle, delta) > epsilon:
            low = middle
        else:
            high = middle
    return high
