"""Laws and reference values of mmmlib.transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mmmlib.transforms import (
    adstock,
    apply_exponent_safe,
    as_tensor,
    carryover,
    fourier_features,
    hill,
    logistic_saturation,
)

nonneg = st.floats(min_value=0.0, max_value=50.0, allow_nan=False, allow_infinity=False)
decays = st.floats(min_value=0.0, max_value=0.95)


def adstock_reference(x: np.ndarray, lam: np.ndarray, normalise: bool = True) -> np.ndarray:
    """LightweightMMM's recursion, written as a plain loop."""
    out = np.empty_like(x)
    out[0] = x[0]
    for t in range(1, len(x)):
        out[t] = x[t] + lam * out[t - 1]
    return out * (1 - lam) if normalise else out


def carryover_reference(x: np.ndarray, tau: np.ndarray, theta: np.ndarray, L: int) -> np.ndarray:
    out = np.zeros_like(x)
    lags = np.arange(L)[:, None]
    w = tau[None, :] ** ((lags - theta[None, :]) ** 2)
    w = w / w.sum(axis=0)
    for t in range(x.shape[0]):
        for lag in range(L):
            if t - lag >= 0:
                out[t] += w[lag] * x[t - lag]
    return out


def test_adstock_docstring_example():
    assert adstock([[1.0], [0.0], [0.0]], [0.5], normalise=False).squeeze().tolist() == [1.0, 0.5, 0.25]


@given(arrays(np.float64, (30, 3), elements=nonneg), st.lists(decays, min_size=3, max_size=3))
def test_adstock_matches_lightweightmmm_recursion(x, lam):
    lam = np.array(lam)
    for normalise in (True, False):
        got = adstock(x, lam, normalise=normalise).numpy()
        np.testing.assert_allclose(got, adstock_reference(x, lam, normalise), rtol=1e-10, atol=1e-10)


@given(arrays(np.float64, (20, 2), elements=nonneg), st.lists(decays, min_size=2, max_size=2))
def test_normalised_adstock_preserves_mass(x, lam):
    """Followed long enough, normalised adstock hands out exactly the input's mass."""
    lam = np.array(lam)
    tail = 800  # 0.95**800 < 1e-17
    padded = np.vstack([x, np.zeros((tail, 2))])
    out = adstock(padded, lam).numpy()
    np.testing.assert_allclose(out.sum(axis=0), x.sum(axis=0), rtol=1e-9, atol=1e-9)


@given(arrays(np.float64, (15, 2), elements=nonneg))
def test_numpy_and_torch_inputs_agree(x):
    lam = np.array([0.3, 0.7])
    a = adstock(x, lam)
    b = adstock(torch.tensor(x), torch.tensor(lam))
    assert torch.equal(a, b)
    h_np = hill(x, np.array([1.0, 2.0]), np.array([1.5, 0.7]))
    h_t = hill(torch.tensor(x), torch.tensor([1.0, 2.0]), torch.tensor([1.5, 0.7]))
    assert torch.equal(h_np, h_t)


def test_geo_broadcasting_applies_channel_parameters_to_every_geo():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, size=(25, 3, 4))
    lam = np.array([0.1, 0.5, 0.9])
    geo = adstock(x, lam).numpy()
    for g in range(4):
        np.testing.assert_allclose(geo[:, :, g], adstock(x[:, :, g], lam).numpy(), rtol=1e-12)
    K, S = np.array([0.5, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])
    hg = hill(x, K, S).numpy()
    np.testing.assert_allclose(hg[:, :, 2], hill(x[:, :, 2], K, S).numpy(), rtol=1e-12)
    cg = carryover(x, np.array([0.5, 0.6, 0.7]), np.array([0.0, 1.0, 2.0])).numpy()
    np.testing.assert_allclose(
        cg[:, :, 1], carryover(x[:, :, 1], np.array([0.5, 0.6, 0.7]), np.array([0.0, 1.0, 2.0])).numpy()
    )


@given(
    arrays(np.float64, (20, 2), elements=nonneg),
    st.lists(st.floats(0.05, 1.0), min_size=2, max_size=2),
    st.lists(st.floats(0.0, 6.0), min_size=2, max_size=2),
    st.integers(1, 13),
)
def test_carryover_matches_reference(x, tau, theta, L):
    tau, theta = np.array(tau), np.array(theta)
    got = carryover(x, tau, theta, number_lags=L).numpy()
    np.testing.assert_allclose(got, carryover_reference(x, tau, theta, L), rtol=1e-10, atol=1e-10)


def test_carryover_peaks_at_the_delay():
    impulse = np.zeros((13, 1))
    impulse[0] = 1.0
    out = carryover(impulse, [0.5], [3.0]).numpy()[:, 0]
    assert int(out.argmax()) == 3
    np.testing.assert_allclose(out.sum(), 1.0)


@given(
    st.lists(nonneg, min_size=2, max_size=40),
    st.floats(0.05, 10.0),
    st.floats(0.2, 5.0),
)
def test_hill_monotone_and_bounded(values, K, S):
    x = np.sort(np.array(values))[:, None]
    h = hill(x, [K], [S]).numpy()[:, 0]
    assert np.all(h >= 0.0) and np.all(h <= 1.0)
    assert np.all(np.diff(h) >= -1e-15)
    assert np.all(h[x[:, 0] == 0] == 0)


def test_hill_half_saturation():
    np.testing.assert_allclose(hill([[2.0]], [2.0], [3.0]).item(), 0.5)
    np.testing.assert_allclose(hill([[1.0]], [2.0], [1.0]).item(), 1.0 / 3.0)


def test_logistic_saturation_bounds_and_zero():
    x = np.linspace(0.0, 20.0, 50)[:, None]
    s = logistic_saturation(x, [0.7]).numpy()[:, 0]
    assert s[0] == 0 and np.all(np.diff(s) > 0) and s[-1] < 1.0
    np.testing.assert_allclose(s, (1 - np.exp(-0.7 * x[:, 0])) / (1 + np.exp(-0.7 * x[:, 0])), rtol=1e-12)


def test_gradients_are_finite_at_the_edges():
    x = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.0], [3.0, 1.5]])
    lam = torch.tensor([0.0, 0.999], requires_grad=True)
    K = torch.tensor([1.0, 0.5], requires_grad=True)
    S = torch.tensor([2.0, 0.5], requires_grad=True)
    tau = torch.tensor([0.3, 1.0], requires_grad=True)
    theta = torch.tensor([0.0, 2.0], requires_grad=True)
    rho = torch.tensor([0.9, 0.5], requires_grad=True)
    y = hill(adstock(x, lam), K, S).sum() + apply_exponent_safe(carryover(x, tau, theta, 4), rho).sum()
    y.backward()
    for p in (lam, K, S, tau, theta, rho):
        assert torch.isfinite(p.grad).all(), p


def test_dtypes_are_kept():
    x32 = torch.rand(10, 2, dtype=torch.float32)
    assert adstock(x32, [0.5, 0.5]).dtype == torch.float32
    assert hill(x32, [1.0, 1.0], [1.0, 1.0]).dtype == torch.float32
    assert adstock(np.ones((10, 2)), [0.5, 0.5]).dtype == torch.float64


def test_bad_parameter_shape_names_the_parameter():
    with pytest.raises(ValueError, match="lag_weight"):
        adstock(np.ones((10, 3)), [0.5, 0.5])
    with pytest.raises(ValueError, match="number_lags"):
        carryover(np.ones((10, 1)), [0.5], [1.0], number_lags=0)


def test_fourier_features_shape_and_offset():
    f = fourier_features(10, period=52, degrees=2)
    assert f.shape == (10, 4)
    g = fourier_features(4, period=52, degrees=2, offset=6)
    np.testing.assert_allclose(f[6:].numpy(), g.numpy(), atol=1e-12)


def test_batched_parameters_match_the_recursion():
    """A batch of parameters (e.g. posterior draws as a trailing axis) gives per-draw adstocks."""
    rng = np.random.default_rng(1)
    x = torch.as_tensor(rng.gamma(2.0, size=(40, 3, 5)))
    lam = torch.as_tensor(rng.uniform(0.0, 0.95, size=(3, 5)))
    out = adstock(x, lam, normalise=False).numpy()
    for c in range(3):
        for s in range(5):
            np.testing.assert_allclose(out[:, c, s], adstock_reference(x[:, c, s].numpy(), lam[c, s].item(), False))


def test_adstock_gradient_in_the_decay_is_exact_at_zero_and_inside():
    """d a_t / d lambda of the un-normalised adstock is sum_j j lambda^(j-1) x_(t-j); at 0 it is x_(t-1)."""
    rng = np.random.default_rng(4)
    x = torch.as_tensor(rng.random((40, 2)))
    for lam0 in (0.0, 0.6):
        lam = torch.full((2,), lam0, dtype=torch.float64, requires_grad=True)
        out = adstock(x, lam, normalise=False)
        t = 37
        out[t].sum().backward()
        expected = sum(j * (lam0 ** (j - 1) if j > 1 else 1.0) * x[t - j] for j in range(1, t + 1))
        np.testing.assert_allclose(lam.grad.numpy(), expected.numpy(), rtol=1e-10)


def test_adstock_batches_over_draws_and_geos_like_the_recursion():
    """Parameters shaped (C, 1, S) against data (T, C, G, 1): every (channel, geo, draw) is its
    own recursion (how the Bayesian model computes contributions for all posterior draws)."""
    rng = np.random.default_rng(5)
    x = rng.random((25, 3, 4))
    lam = rng.uniform(0, 0.95, size=(3, 1, 6))
    got = adstock(torch.as_tensor(x).unsqueeze(-1), torch.as_tensor(lam)).numpy()  # (T, C, G, S)
    assert got.shape == (25, 3, 4, 6)
    for g in range(4):
        for s in range(6):
            np.testing.assert_allclose(got[:, :, g, s], adstock_reference(x[:, :, g], lam[:, 0, s], True), rtol=1e-10)


def test_as_tensor_copies_a_read_only_array_instead_of_sharing_it():
    arr = np.arange(5.0)
    arr.flags.writeable = False
    t = as_tensor(arr)
    t[0] = 99.0
    assert arr[0] == 0.0
    writable = np.arange(5.0)
    assert as_tensor(writable).data_ptr() == writable.ctypes.data  # no needless copy
