"""mmmlib.inference.nuts: the NUTS sampler samples the right distribution, reproducibly."""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest

from mmmlib.inference.nuts import sample_nuts, warmup_windows


class Gaussian:
    """A correlated Gaussian with badly scaled axes (picklable for the process pool)."""

    def __init__(self, dim: int = 6, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        a = rng.normal(size=(dim, dim))
        self.cov = a @ a.T / dim + np.diag(np.geomspace(0.05, 20.0, dim))
        self.prec = np.linalg.inv(self.cov)
        self.mean = np.arange(dim, dtype=float)

    def __call__(self, z):
        d = z - self.mean
        g = -self.prec @ d
        return float(0.5 * d @ g), g


@pytest.mark.parametrize("dense", [False, True])
def test_moments_of_a_correlated_gaussian(dense):
    target = Gaussian()
    res = sample_nuts(target, np.zeros(6), num_warmup=400, num_samples=3000, chains=2, seed=1,
                      dense_mass=dense, processes=1)
    x = res.draws.reshape(-1, 6)
    sd = np.sqrt(np.diag(target.cov))
    assert np.all(np.abs(x.mean(0) - target.mean) < 0.1 * sd)
    np.testing.assert_allclose(x.var(0) / np.diag(target.cov), 1.0, atol=0.12)
    assert max(float(az.rhat(res.draws[:, :, j])) for j in range(6)) < 1.01
    assert res.num_divergent == 0


def test_same_seed_same_draws_in_parallel_or_not():
    target = Gaussian(dim=3)
    a = sample_nuts(target, np.zeros(3), 100, 50, chains=2, seed=5, processes=1)
    b = sample_nuts(target, np.zeros(3), 100, 50, chains=2, seed=5, processes=2)
    np.testing.assert_array_equal(a.draws, b.draws)
    c = sample_nuts(target, np.zeros(3), 100, 50, chains=2, seed=6, processes=1)
    assert not np.array_equal(a.draws, c.draws)


def test_divergences_are_reported():
    """A density with a cliff: steps that cross it are divergent, and counted."""

    def cliff(z):
        v = -0.5 * float(z @ z)
        if z[0] > 1.0:
            return v - 1e4 * (z[0] - 1.0) ** 2, -z - np.array([2e4 * (z[0] - 1.0), 0.0])
        return v, -z

    res = sample_nuts(cliff, np.zeros(2), 50, 300, chains=1, seed=0, processes=1)
    assert res.num_divergent > 0
    assert res.draws[..., 0].max() < 1.2


def test_stan_warmup_windows():
    assert warmup_windows(1000) == [(75, 100), (100, 150), (150, 250), (250, 450), (450, 950)]
    assert warmup_windows(100) == [(15, 90)]
    assert warmup_windows(10) == []


def test_bad_arguments():
    with pytest.raises(ValueError, match="target_accept_prob"):
        sample_nuts(Gaussian(2), np.zeros(2), 10, 10, target_accept_prob=1.5)
    with pytest.raises(ValueError, match="not finite"):
        sample_nuts(lambda z: (float("nan"), z), np.zeros(2), 10, 10, chains=1, processes=1)
    with pytest.raises(ValueError, match="initial points"):
        sample_nuts(Gaussian(2), np.zeros((3, 2)), 10, 10, chains=2, processes=1)
    with pytest.raises(ValueError, match="init_inverse_mass"):
        sample_nuts(Gaussian(2), np.zeros(2), 10, 10, chains=1, processes=1, init_inverse_mass=np.eye(3))


def test_per_chain_starts_and_an_initial_metric():
    """Chains start at their own points (e.g. draws of a VI fit) and warm up from a given
    metric; the draws still have the target's moments."""
    target = Gaussian(3)
    starts = target.mean + np.array([[30.0, -30.0, 0.0], [-30.0, 30.0, 0.0]])
    first = sample_nuts(target, starts, 0, 1, chains=2, seed=3, processes=1, init_jitter=0.0,
                        init_inverse_mass=target.cov)
    assert first.draws[0, 0, 0] > first.draws[1, 0, 0]  # one step from opposite starts
    res = sample_nuts(target, starts, 300, 2000, chains=2, seed=3, processes=1, dense_mass=True,
                      init_inverse_mass=target.cov, init_jitter=0.0)
    draws = res.draws.reshape(-1, 3)
    np.testing.assert_allclose(draws.mean(axis=0), target.mean, atol=0.25)
    np.testing.assert_allclose(np.cov(draws, rowvar=False), target.cov, atol=0.25 * target.cov.max())
    assert res.num_divergent == 0
