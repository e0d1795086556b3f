"""mmmlib.inference.vi: full-rank ADVI finds a Gaussian target exactly and is reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from mmmlib.inference.vi import fit_advi


def _gaussian(mean, cov):
    prec = np.linalg.inv(cov)

    def f(z):
        d = z - mean
        return -0.5 * float(d @ prec @ d), -prec @ d

    return f


def test_advi_recovers_a_correlated_gaussian():
    mean = np.array([1.0, -2.0, 0.5])
    cov = np.array([[1.0, 0.8, 0.0], [0.8, 1.0, -0.3], [0.0, -0.3, 0.5]])
    res = fit_advi(_gaussian(mean, cov), np.zeros(3), steps=4000, seed=0, lr=0.05)
    np.testing.assert_allclose(res.mean, mean, atol=0.05)
    np.testing.assert_allclose(res.scale_tril @ res.scale_tril.T, cov, atol=0.08)
    draws = res.sample(20000, seed=1)
    np.testing.assert_allclose(np.cov(draws.T), cov, atol=0.1)


def test_advi_is_reproducible_and_checks_arguments():
    f = _gaussian(np.zeros(2), np.eye(2))
    a = fit_advi(f, np.ones(2), steps=50, seed=3)
    b = fit_advi(f, np.ones(2), steps=50, seed=3)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.elbo, b.elbo)
    with pytest.raises(ValueError, match="steps"):
        fit_advi(f, np.ones(2), steps=0)
    with pytest.raises(ValueError, match="init_scale"):
        fit_advi(f, np.ones(2), init_scale=0.0)
