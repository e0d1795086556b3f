"""mmmlib.bayes.density: the NumPy log density is the Pyro model's, and its gradient is right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pyro.infer.mcmc.util import initialize_model

from mmmlib.bayes.density import LEVEL_SOFTNESS, NationalDensity, geometric_scan
from mmmlib.bayes.model import MODELS, BayesianMMM
from mmmlib.transforms import adstock
from mmmlib.worlds import easy_world


@pytest.fixture(scope="module")
def world():
    return easy_world(seed=3, n_weeks=40)


def _density(world, model, prior, coordinates="native"):
    """The density on the unit trend index (the raw index is a change of variables, tested below).
    ``roi_by_channel``: the ROI prior with its own prior on two channels."""
    own = {"tv": (1.0, 0.1), "display": (-0.5, 0.3)} if prior == "roi_by_channel" else None
    prior = "roi" if own else prior
    mmm = BayesianMMM(model, media_prior=prior, trend_index="unit", roi_prior_by_channel=own)
    return mmm, mmm.density(world.data, coordinates="roi" if prior == "roi" else coordinates)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("prior", "coordinates"), [("cost", "native"), ("cost", "roi"), ("flat", "roi"), ("roi", "roi"),
                                                   ("roi", "level"), ("cost", "level")])
@pytest.mark.parametrize("shift", [0.0, 1.5])
def test_gradient_matches_finite_differences(world, model, prior, coordinates, shift):
    """At points near the support's edge (intercept about 0.02 in level coordinates) and inside."""
    d = BayesianMMM(model, media_prior=prior).density(world.data, coordinates=coordinates)
    z = np.random.default_rng(0).normal(scale=0.5, size=d.dim)
    z[0] += shift
    lp, grad = d(z)
    eye = np.eye(d.dim)
    fd = np.array([(d(z + 1e-6 * e)[0] - d(z - 1e-6 * e)[0]) / 2e-6 for e in eye])
    assert np.isfinite(lp)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("prior", ["cost", "roi", "roi_by_channel"])
def test_log_density_is_the_pyro_models(world, model, prior):
    """Pyro's potential (with its own unconstraining transforms) and ours differ by a constant."""
    mmm, d = _density(world, model, prior)
    prep = mmm._prepare(world.data)
    _, potential_fn, _, _ = initialize_model(
        mmm._model, model_args=(prep.media, prep.controls, prep.seasonal, prep.t_index),
        model_kwargs={"target": prep.target},
    )
    rng = np.random.default_rng(1)
    gaps = []
    for _ in range(3):
        z = rng.normal(scale=0.4, size=d.dim)
        scalars = ("intercept", "coef_trend", "expo_trend", "sigma")
        params = {s.name: torch.as_tensor(z[d.slices[s.name]]).reshape(() if s.name in scalars else (-1,))
                  for s in d.sites}
        gaps.append(d(z)[0] + float(potential_fn(params)))
    assert max(gaps) - min(gaps) < 1e-8 * max(1.0, abs(gaps[0]))


@pytest.mark.parametrize("model", MODELS)
def test_roi_coordinates_are_a_unit_jacobian_change_of_variables(world, model):
    """The cost-prior density in ROI coordinates equals the native one at the same point."""
    _, native = _density(world, model, "cost", "native")
    _, in_roi = _density(world, model, "cost", "roi")
    rng = np.random.default_rng(2)
    for _ in range(3):
        z = rng.normal(scale=0.4, size=native.dim)
        values = native.constrain(z[None])
        beta = values["coef_media"][0]
        f, _, _ = native._media(native._constrain_one(z))
        values["roi"] = beta * f.sum(axis=0) / in_roi.roi_units
        z_roi = in_roi.unconstrain({k: v[0] if k != "roi" else v for k, v in values.items()})
        assert abs(native(z)[0] - in_roi(z_roi)[0]) < 1e-9 * max(1.0, abs(native(z)[0]))
        np.testing.assert_allclose(in_roi.constrain(z_roi[None])["coef_media"][0], beta, rtol=1e-10)


@pytest.mark.parametrize("prior", ["roi", "cost"])
def test_level_coordinates_are_a_change_of_variables(world, prior):
    """The level-coordinate density is the ROI-coordinate one times the Jacobian
    d log(alpha) / dv = sigmoid((v - M) / s) / alpha, at the same point; and the map inverts."""
    mmm = BayesianMMM("hill_adstock", media_prior=prior)
    level, in_roi = mmm.density(world.data, coordinates="level"), mmm.density(world.data, coordinates="roi")
    assert level.sites[0].name == "level" and in_roi.sites[0].name == "intercept"
    rng = np.random.default_rng(5)
    for shift in (-0.5, 0.5, 2.0):
        z = rng.normal(scale=0.4, size=level.dim)
        z[0] += shift
        values = {k: v[0] for k, v in level.constrain(z[None]).items()}
        alpha = values["intercept"]
        rest = level._rest_mean(level._constrain_one(z), z[level._linear])
        assert alpha > 0 and np.isclose(alpha, LEVEL_SOFTNESS * np.logaddexp(0.0, (z[0] - rest) / LEVEL_SOFTNESS))
        log_jac = -np.logaddexp(0.0, -(z[0] - rest) / LEVEL_SOFTNESS) - np.log(alpha)
        z_roi = in_roi.unconstrain(values)
        assert abs(level(z)[0] - in_roi(z_roi)[0] - log_jac) < 1e-9 * max(1.0, abs(level(z)[0]))
        values.pop("level")
        np.testing.assert_allclose(level.unconstrain(values), z, atol=1e-9)


def test_level_is_the_window_mean_of_the_mean_function(world):
    """Far from the support's edge, the level is the intercept plus the window mean of trend,
    seasonality, controls and media contributions."""
    d = BayesianMMM("hill_adstock", media_prior="roi").density(world.data, coordinates="level")
    z = np.random.default_rng(6).normal(scale=0.3, size=d.dim)
    z[0] = 5.0
    p = {k: v[0] for k, v in d.constrain(z[None]).items()}
    f, _, _ = d._media(d._constrain_one(z))
    mean_fn = (p["intercept"] + p["coef_trend"] * d._trend(p["expo_trend"]) + d._design @ z[d._linear]
               + f @ p["coef_media"])
    assert np.isclose(mean_fn.mean(), 5.0, rtol=1e-9)


def test_geometric_scan_is_adstock_and_its_derivative():
    rng = np.random.default_rng(0)
    x = rng.gamma(2.0, 1.0, size=(57, 3))
    lam = np.array([0.0, 0.5, 0.93])
    a, b = geometric_scan(x, lam)
    np.testing.assert_allclose(a, adstock(x, lam, normalise=False).numpy(), rtol=1e-12)
    h = 1e-6
    fd = (geometric_scan(x, lam + h)[0] - geometric_scan(x, lam - np.array([0.0, h, h]))[0])
    fd = fd / np.array([h, 2 * h, 2 * h])
    np.testing.assert_allclose(b[:, 1:], fd[:, 1:], rtol=1e-5)
    np.testing.assert_allclose(b[1:, 0], x[:-1, 0], rtol=1e-5)  # d/dlam at 0 is the previous input


@pytest.mark.parametrize("model", MODELS)
def test_channel_off_in_the_first_weeks(world, model):
    """Before a channel's first spend its transformed media is 0 (log -inf): the density
    and its gradient stay finite and right."""
    _, d = _density(world, model, "roi")
    media = d.x.copy()
    media[:6, 1] = 0.0
    off = NationalDensity(model, media, d.z_ctrl, d.seasonal, d.t, d.y, d.cost, media_prior="roi",
                          roi_units=d.roi_units, roi_prior=d.roi_prior)
    z = np.random.default_rng(2).normal(scale=0.5, size=off.dim)
    lp, grad = off(z)
    fd = np.array([(off(z + 1e-6 * e)[0] - off(z - 1e-6 * e)[0]) / 2e-6 for e in np.eye(off.dim)])
    assert np.isfinite(lp)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))
    f, log_f, _ = off._media(off._constrain_one(z))
    assert np.all(f[:6, 1] == 0.0) and np.all(np.isneginf(log_f[:6, 1]))
    assert np.all(f[6:, 1] > 0.0)


def test_constrain_unconstrain_round_trip(world):
    _, d = _density(world, "carryover", "cost")
    med = d.prior_median()
    back = d.constrain(d.unconstrain(med)[None])
    for site in d.sites:
        np.testing.assert_allclose(back[site.name][0], np.broadcast_to(med[site.name], back[site.name][0].shape), rtol=1e-9)


def test_roi_prior_needs_units():
    with pytest.raises(ValueError, match="roi_units"):
        NationalDensity("adstock", np.ones((5, 1)), np.zeros((5, 0)), np.zeros((5, 0)), np.arange(5.0),
                        np.ones(5), np.ones(1), media_prior="roi")


@pytest.mark.parametrize(("kwargs", "match"), [(dict(media_prior="roi", coordinates="native"), "native"),
                                               (dict(coordinates="beta"), "coordinates"),
                                               (dict(media_prior="uniform"), "media_prior")])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NationalDensity("adstock", np.ones((5, 1)), np.zeros((5, 0)), np.zeros((5, 0)), np.arange(5.0),
                        np.ones(5), np.ones(1), roi_units=np.ones(1), **kwargs)


@pytest.mark.parametrize(("prior", "coordinates"), [("cost", "native"), ("cost", "roi"), ("roi", "level")])
def test_raw_trend_index_gradient_matches_finite_differences(world, prior, coordinates):
    """LightweightMMM's integer trend index, sampled as the trend on t / T (trend_base = T)."""
    d = BayesianMMM("hill_adstock", media_prior=prior, trend_index="raw").density(world.data, coordinates=coordinates)
    assert d.log_b == pytest.approx(np.log(world.data.n_times))
    z = np.random.default_rng(2).normal(scale=0.5, size=d.dim)
    lp, grad = d(z)
    fd = np.array([(d(z + 1e-6 * e)[0] - d(z - 1e-6 * e)[0]) / 2e-6 for e in np.eye(d.dim)])
    assert np.isfinite(lp)
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(fd).max()))


@pytest.mark.parametrize("prior", ["cost", "roi"])
def test_raw_trend_index_is_a_change_of_variables_of_the_pyro_model(world, prior):
    r"""With the raw index the density samples tau = coef_trend * T^kappa: it equals Pyro's density
    of coef_trend = tau T^-kappa times the Jacobian T^-kappa, up to a constant."""
    mmm = BayesianMMM("hill_adstock", media_prior=prior, trend_index="raw")
    d = mmm.density(world.data, coordinates="roi")
    prep = mmm._prepare(world.data)
    assert float(prep.t_index.max()) == world.data.n_times - 1  # Pyro's program sees the raw index
    _, potential_fn, _, _ = initialize_model(
        mmm._model, model_args=(prep.media, prep.controls, prep.seasonal, prep.t_index), model_kwargs={"target": prep.target},
    )
    rng = np.random.default_rng(3)
    log_b = np.log(world.data.n_times)
    gaps = []
    for _ in range(3):
        z = rng.normal(scale=0.4, size=d.dim)
        c = d.constrain(z)
        kappa = float(c["expo_trend"][0])
        params = {s.name: torch.as_tensor(z[d.slices[s.name]]).reshape(() if s.size == 1 and s.name in (
            "intercept", "coef_trend", "expo_trend", "sigma") else (-1,)) for s in d.sites}
        params["coef_trend"] = torch.as_tensor(float(c["coef_trend"][0]))
        if prior != "roi":  # Pyro samples log coef_media, not log ROI (unit Jacobian shear)
            params.pop("roi")
            params["coef_media"] = torch.as_tensor(np.log(c["coef_media"][0]))
        np.testing.assert_allclose(c["coef_trend"][0], z[d.slices["coef_trend"]][0] * np.exp(-kappa * log_b))
        gaps.append(d(z)[0] + float(potential_fn(params)) + kappa * log_b)
    assert max(gaps) - min(gaps) < 1e-8 * max(1.0, abs(gaps[0]))


def test_raw_trend_round_trip(world):
    mmm = BayesianMMM("adstock", trend_index="raw")
    d = mmm.density(world.data, coordinates="native")
    values = {**d.prior_median(), "coef_trend": 0.003, "expo_trend": 1.2}
    back = d.constrain(d.unconstrain(values))
    assert back["coef_trend"][0] == pytest.approx(0.003) and back["expo_trend"][0] == pytest.approx(1.2)
