"""DP-SGD's pure parts: each rank's share of the noise, epsilon from the accountant, and its
inverse (the noise for a target epsilon)."""
import math
import re

import pytest

from persona.training.privacy import dp_epsilon, noise_for_epsilon, rank_noise_multiplier

pytestmark = pytest.mark.unit


def test_rank_noise_adds_up_to_the_configured_noise():
    assert rank_noise_multiplier(1.2, 1) == 1.2
    assert rank_noise_multiplier(1.2, 4) == pytest.approx(0.6)
    # N independent noises of std sigma_r add up to std sqrt(N) * sigma_r = sigma.
    for ranks in (2, 3, 8):
        assert math.sqrt(ranks) * rank_noise_multiplier(0.9, ranks) == pytest.approx(0.9)


def test_epsilon_is_tensorflow_privacy_s_statement():
    pytest.importorskip("tensorflow_privacy")
    from tensorflow_privacy.privacy.analysis.compute_dp_sgd_privacy_lib import (
        compute_dp_sgd_privacy_statement)

    # 10,000 users in batches of 100 for 5 epochs: 500 steps, as the statement counts them.
    statement = compute_dp_sgd_privacy_statement(
        number_of_examples=10_000, batch_size=100, num_epochs=5, noise_multiplier=1.1,
        delta=1e-5, used_microbatching=False)
    poisson = float(re.search(r"Poisson sampling \(\*\):\s+([0-9.]+)", statement).group(1))
    assert dp_epsilon(10_000, 100, 500, 1.1, 1e-5) == pytest.approx(poisson, abs=1e-3)


def test_noise_for_epsilon_is_the_smallest_noise_within_it():
    pytest.importorskip("dp_accounting")
    args = (20_000, 256, 30 * 79, 1 / 20_000)
    for target in (1.0, 3.0, 10.0):
        sigma = noise_for_epsilon(target, *args)
        assert dp_epsilon(*args[:3], sigma, args[3]) <= target
        assert dp_epsilon(*args[:3], sigma / 1.002, args[3]) > target
    assert noise_for_epsilon(1.0, *args) > noise_for_epsilon(10.0, *args)

