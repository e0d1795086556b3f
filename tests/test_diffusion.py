"""Tests of Chapter 5: the time-varying-coefficient world, the Kalman smoother and the diffusion model."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from mmmlib.runtime import setup
from mmmlib.tvc import experiment as ex
from mmmlib.tvc.diffusion import (
    DiffusionConfig,
    PathSamples,
    TVCDiffusion,
    TVCScaler,
    cosine_schedule,
    project_sales,
    sample_quantile,
    spread_factor,
)
from mmmlib.tvc.statespace import KalmanTVC, LogKalmanTVC
from mmmlib.tvc.world import (
    TVCConfig,
    TVCWorld,
    baseline_features,
    media_features,
    simulate_tvc,
    validate_tvc,
)

CFG = TVCConfig(n_weeks=40)


@pytest.fixture(scope="module")
def worlds():
    return simulate_tvc(CFG, 400, seed=1), simulate_tvc(CFG, 12, seed=2)


@pytest.fixture(scope="module")
def fitted(worlds):
    setup(0)
    train, _ = worlds
    return TVCDiffusion(DiffusionConfig(d_model=32, heads=4, steps=20, ddim_steps=5, epochs=2, batch_size=50)).fit(train)


# ----------------------------------------------------------------------------- world
def test_world_identity_and_truth(worlds):
    w, _ = worlds
    assert w.beta.shape == (400, 40, 5) and w.gamma.shape == (400, 40, 3)
    assert (w.beta > 0).all() and (w.media >= 0).all() and (w.media < 1).all()
    resid = w.sales - w.baseline - w.contributions.sum(-1) - (w.gamma * w.controls).sum(-1)
    # the residual is the noise: its spread matches the true noise sd of each series
    assert abs(np.mean(resid.std(1) / w.noise_sd) - 1.0) < 0.03
    # log-OU volatility of the media coefficients near the configured weekly volatility (jumps are rare)
    step = np.diff(np.log(w.beta), axis=1)
    assert 0.10 < np.median(np.abs(step)) / 0.6745 < 0.16
    # the same seed gives the same world, another seed another
    assert np.array_equal(simulate_tvc(CFG, 3, seed=5).sales, simulate_tvc(CFG, 3, seed=5).sales)
    assert not np.array_equal(simulate_tvc(CFG, 3, seed=5).sales, simulate_tvc(CFG, 3, seed=6).sales)


def test_media_features_are_hill_of_adstock():
    spend = np.zeros((1, 10, 5))
    spend[0, 0] = 1.0
    x = media_features(spend, CFG)
    lam = np.asarray(CFG.decay)
    a = (1 - lam) * lam ** 3  # normalised adstock three weeks after a unit pulse
    want = a**CFG.slope / (a**CFG.slope + CFG.half_saturation**CFG.slope)
    assert np.allclose(x[0, 3], want)


def test_bad_inputs_name_the_place():
    w = simulate_tvc(CFG, 2, seed=0)
    spend = w.spend.copy()
    spend[1, 7, 2] = -1.0
    with pytest.raises(ValueError, match=r"spend is negative in column 'social' at series 1, week 7"):
        validate_tvc(spend, w.controls, w.sales, CFG)
    sales = w.sales.copy()
    sales[0, 3] = np.nan
    with pytest.raises(ValueError, match=r"sales has a missing or infinite value .* series 0, week 3"):
        validate_tvc(w.spend, w.controls, sales, CFG)
    with pytest.raises(ValueError, match="controls must have shape"):
        validate_tvc(w.spend, w.controls[..., :2], w.sales, CFG)
    with pytest.raises(ValueError, match="beta_median"):
        TVCConfig(beta_median=(1.0,))
    with pytest.raises(ValueError, match="ddim_steps"):
        DiffusionConfig(steps=10, ddim_steps=20)
    with pytest.raises(ValueError, match="unknown terms"):
        DiffusionConfig(weights={"chanel": 1.0})


# ----------------------------------------------------------------------------- Kalman
def test_kalman_matches_batch_regression_when_coefficients_are_static():
    """With zero process noise the smoother is Bayesian linear regression: compare to the closed form."""
    rng = np.random.default_rng(0)
    n, t, c, k = 3, 30, 2, 1
    media, controls = rng.random((n, t, c)), rng.normal(size=(n, t, k))
    f = baseline_features(t)
    s = c + k + 4
    m0, p0 = rng.normal(size=s), np.diag(rng.uniform(0.5, 2.0, s))
    kal = KalmanTVC(m0=m0, P0=p0, phi=np.ones(s), q=np.zeros(s), long_run=np.zeros(s), r=0.3)
    sales = rng.normal(size=(n, t))
    post = kal.smooth(media, controls, sales)
    for i in range(n):
        h = np.concatenate([media[i], controls[i], f], 1)
        prec = np.linalg.inv(p0) + h.T @ h / 0.3
        mean = np.linalg.solve(prec, np.linalg.inv(p0) @ m0 + h.T @ sales[i] / 0.3)
        assert np.allclose(post.mean[i, 0], mean, atol=1e-8) and np.allclose(post.mean[i, -1], mean, atol=1e-8)
        assert np.allclose(post.sd[i, 5], np.sqrt(np.diag(np.linalg.inv(prec))), atol=1e-8)


def test_kalman_tracks_paths_and_is_calibrated(worlds):
    train, test = worlds
    kal = KalmanTVC.calibrate(train)
    est = ex.estimate_from_kalman(kal.smooth(test.media, test.controls, test.sales), test, 0.0)
    sc = ex.score_paths(est, test)
    assert sc["corr_pooled"] > 0.6 and sc["mape_sales"] < 0.02
    assert 0.8 < sc["coverage90"] < 0.99


def test_log_smoother_converges_to_the_posterior_mode():
    """The iterated smoother's mean is the mode of the exact posterior with log media states."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(3)
    t, c, k = 25, 2, 1
    media, controls = rng.random((1, t, c)), rng.normal(size=(1, t, k))
    f = baseline_features(t)
    m0 = np.concatenate([[np.log(3.0), np.log(2.0)], [0.5], [10.0, 0.0, 0.5, 0.0]])
    p0 = np.diag([0.2, 0.2, 0.1, 1.0, 0.1, 0.1, 0.1])
    phi, q = np.array([0.9, 0.8, 0.95, 1, 1, 1, 1]), np.array([0.02, 0.03, 0.01, 0, 0, 0, 0])
    long_run = np.concatenate([m0[:3], np.zeros(4)])
    prior = KalmanTVC(m0=m0, P0=p0, phi=phi, q=q, long_run=long_run, r=0.05)
    sales = 10 + (3 * media).sum(-1) + 0.3 * rng.normal(size=(1, t))
    post = LogKalmanTVC(prior, iterations=30, tol=1e-7).smooth(media, controls, sales)
    d = c + k

    def neg_log_post(x):
        path, base = x[: t * d].reshape(t, d), x[t * d:]
        first = np.concatenate([path[0], base]) - m0
        out = 0.5 * first @ np.linalg.solve(p0, first)
        innov = path[1:] - phi[:d] * path[:-1] - (1 - phi[:d]) * long_run[:d]
        out += 0.5 * (innov**2 / q[:d]).sum()
        fit = (np.exp(path[:, :c]) * media[0]).sum(-1) \
            + (path[:, c:] * controls[0]).sum(-1) + f @ base
        return out + 0.5 * ((sales[0] - fit) ** 2).sum() / prior.r

    x0 = np.concatenate([np.tile(m0[:d], t), m0[d:]])
    best = minimize(neg_log_post, x0, method="BFGS", options={"gtol": 1e-9, "maxiter": 20000}).x
    assert post.log_media and post.converged.all()
    smoother = LogKalmanTVC(prior, iterations=30, tol=1e-10)
    states = np.concatenate([best[: t * d].reshape(t, d), np.tile(best[t * d:], (t, 1))], axis=1)[None]
    assert np.isclose(smoother.neg_log_posterior(states, media, controls, sales)[0], neg_log_post(best), rtol=1e-10)
    assert np.allclose(post.mean[0, :, :d], best[: t * d].reshape(t, d), atol=1e-4)
    assert np.allclose(post.mean[0, 0, d:], best[t * d:], atol=1e-4)
    assert np.all(post.beta_quantile(0.05) < post.beta) and np.all(post.beta < post.beta_quantile(0.95))


@pytest.mark.parametrize("draws", [39, 64])
def test_sample_bands_cover_at_their_nominal_level_however_few_the_draws(draws):
    """Truth and draws from the same distribution: the 90% band must hold the truth 90% of the time."""
    rng = np.random.default_rng(0)
    sample, truth = rng.standard_normal((40000, draws)), rng.standard_normal(40000)
    lo, hi = sample_quantile(sample, 0.05), sample_quantile(sample, 0.95)
    assert abs(float(((truth >= lo) & (truth <= hi)).mean()) - 0.90) < 0.006


@pytest.fixture(scope="module")
def diverging_series():
    """Three wear-out series on which undamped Gauss-Newton reached coefficients of 1e7 to 1e17."""
    from mmmlib.tvc.wearout import WearoutDynamics, simulate_wearout

    cfg = TVCConfig(n_weeks=104)
    train, _ = simulate_wearout(cfg, WearoutDynamics(), 2000, seed=1)
    test = simulate_wearout(cfg, WearoutDynamics(), 300, seed=3)[0].subset(np.array([132, 201, 285]))
    return train, test


def test_log_smoother_damps_its_steps_where_undamped_gauss_newton_diverges(diverging_series):
    train, test = diverging_series
    smoother = LogKalmanTVC.calibrate(train, iterations=40)
    post = smoother.smooth(test.media, test.controls, test.sales, warn=False)
    ratio = post.beta.max(axis=(1, 2)) / test.beta.max(axis=(1, 2))
    assert np.all((ratio > 0.5) & (ratio < 2)), ratio
    start = smoother.initial_states(*test.media.shape, test.controls.shape[-1])
    assert np.all(smoother.neg_log_posterior(post.mean, test.media, test.controls, test.sales)
                  < smoother.neg_log_posterior(start, test.media, test.controls, test.sales))


def test_log_smoother_counts_a_stalled_search_as_not_converged(diverging_series):
    """Without halvings the first full step overshoots and is refused: the series stays at its start."""
    train, test = diverging_series
    smoother = replace(LogKalmanTVC.calibrate(train), iterations=5, max_halvings=0)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        post = smoother.smooth(test.media, test.controls, test.sales)
    stalled = np.all(post.mean == smoother.initial_states(*test.media.shape, test.controls.shape[-1]), axis=(1, 2))
    assert stalled.any()
    assert not post.converged[stalled].any()


def test_log_smoother_flags_and_warns_about_series_that_did_not_converge(worlds):
    train, test = worlds
    with pytest.warns(RuntimeWarning, match=r"of \d+ series did not converge in 1 passes"):
        post = LogKalmanTVC.calibrate(train, iterations=1).smooth(test.media, test.controls, test.sales)
    assert post.converged.dtype == bool and not post.converged.all()
    post = LogKalmanTVC.calibrate(train).smooth(test.media, test.controls, test.sales)
    assert post.converged.all()


def test_log_smoother_tracks_about_as_well_as_the_linear_one(worlds):
    train, test = worlds
    lin = ex.score_paths(ex.estimate_from_kalman(KalmanTVC.calibrate(train).smooth(test.media, test.controls,
                                                                                     test.sales), test, 0.0), test)
    log = ex.score_paths(ex.estimate_from_kalman(LogKalmanTVC.calibrate(train).smooth(test.media, test.controls,
                                                                                        test.sales), test, 0.0), test)
    assert log["corr_pooled"] > lin["corr_pooled"] - 0.02 and log["mape_sales"] < 0.02
    assert 0.8 < log["coverage90"] < 0.99


# ----------------------------------------------------------------------------- diffusion
def test_cosine_schedule_is_monotone_from_one_to_zero():
    ab = cosine_schedule(100)
    assert ab.shape == (100,) and (ab.diff() < 0).all()
    assert 0.99 < float(ab[0]) <= 1.0 and float(ab[-1]) < 1e-3


def test_projection_is_the_linearised_gaussian_update(worlds):
    train, test = worlds
    sc = TVCScaler.fit(train)
    v = torch.as_tensor(sc.encode(test))[:2] + 0.3
    m, z = torch.as_tensor(test.media[:2]).float(), torch.as_tensor(test.controls[:2]).float()
    y = torch.as_tensor(test.sales[:2]).float()
    before = (y - _sales(sc, v, m, z)).abs().mean()
    after_weak = (y - _sales(sc, project_sales(sc, v, m, z, y, 1e-6), m, z)).abs().mean()
    after = (y - _sales(sc, project_sales(sc, v, m, z, y, 10.0), m, z)).abs().mean()
    assert float(after) < 0.1 * float(before)  # a vague prior lets the data win
    assert abs(float(after_weak) - float(before)) < 0.01 * float(before)  # a tight prior barely moves


def _sales(sc, v, m, z):
    beta, gamma, base = sc.decode(v)
    return base + (beta * m).sum(-1) + (gamma * z).sum(-1)


def test_scaler_round_trip(worlds):
    train, test = worlds
    sc = TVCScaler.fit(train)
    beta, gamma, base = sc.decode(torch.as_tensor(sc.encode(test)))
    assert np.allclose(beta.numpy(), test.beta, rtol=1e-4)
    assert np.allclose(base.numpy(), test.baseline, rtol=1e-4)


def test_fit_and_sample_shapes_and_reproducibility(fitted, worlds):
    _, test = worlds
    hist = fitted.history
    assert len(hist) == 2 and all(np.isfinite(h["loss"]) for h in hist)
    # auxiliary losses are off for the first quarter, then ramped in
    assert [fitted._aux_factor(p) for p in (0.0, 0.2, 0.375, 0.5, 0.9)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    a = fitted.sample(test.media[:3], test.controls[:3], test.sales[:3], n_samples=4, seed=3)
    b = fitted.sample(test.media[:3], test.controls[:3], test.sales[:3], n_samples=4, seed=3)
    assert a.beta.shape == (3, 4, 40, 5) and (a.beta > 0).all()
    assert np.array_equal(a.beta, b.beta)
    d = fitted.sample(test.media[:1], test.controls[:1], test.sales[:1], n_samples=2, method="ddpm", seed=3)
    assert d.beta.shape == (1, 2, 40, 5) and np.isfinite(d.beta).all()
    with pytest.raises(ValueError, match="method"):
        fitted.sample(test.media[:1], test.controls[:1], test.sales[:1], method="euler")
    with pytest.raises(ValueError, match="trained with 5 channels"):
        fitted.sample(test.media[:1, :, :4], test.controls[:1], test.sales[:1])


def test_projection_makes_samples_reproduce_sales(fitted, worlds):
    _, test = worlds
    free = fitted.sample(test.media, test.controls, test.sales, n_samples=4, project=False, seed=0)
    proj = fitted.sample(test.media, test.controls, test.sales, n_samples=4, project=True, seed=0)
    mape = [np.mean(np.abs(s.sales(test.media, test.controls).mean(1) - test.sales) / test.sales) for s in (free, proj)]
    assert mape[1] < mape[0] and mape[1] < 0.03


def _band_coverage(beta, truth):
    lo, hi = np.quantile(beta, 0.05, axis=1, method="weibull"), np.quantile(beta, 0.95, axis=1, method="weibull")
    return float(((truth >= lo) & (truth <= hi)).mean())


def _lognormal_samples(draw_sd, n=20000):
    rng = np.random.default_rng(4)
    truth = np.exp(rng.standard_normal((n, 1, 3)))
    beta = np.exp(draw_sd * rng.standard_normal((n, 19, 1, 3)))
    return PathSamples(beta, rng.normal(size=(n, 19, 1, 2)), rng.normal(size=(n, 19, 1)), 0.0), truth


def test_widen_scales_the_log_spread_and_keeps_the_median():
    samples, _ = _lognormal_samples(0.5, n=50)
    wide = samples.widen(1.7)
    log_b, log_w = np.log(samples.beta), np.log(wide.beta)
    assert np.allclose(log_w.mean(1), log_b.mean(1)) and np.allclose(log_w.std(1), 1.7 * log_b.std(1))
    assert np.allclose(np.median(log_w, 1) - log_b.mean(1), 1.7 * (np.median(log_b, 1) - log_b.mean(1)))
    assert wide.gamma is samples.gamma and wide.baseline is samples.baseline
    with pytest.raises(ValueError, match="positive"):
        samples.widen(0.0)


@pytest.mark.parametrize("draw_sd, expected", [(0.5, 2.0), (1.0, 1.0)])
def test_spread_factor_brings_bands_to_nominal_coverage(draw_sd, expected):
    """Log draws narrower than the truth's spread (or as wide): the factor restores 90% coverage."""
    samples, truth = _lognormal_samples(draw_sd)
    f = spread_factor(samples, truth)
    assert f == pytest.approx(expected, rel=0.05)
    assert _band_coverage(samples.widen(f).beta, truth) == pytest.approx(0.90, abs=2e-4)
    assert _band_coverage(samples.widen(0.97 * f).beta, truth) < 0.895 < 0.905 < _band_coverage(samples.widen(1.03 * f).beta, truth)
    with pytest.raises(ValueError, match="does not match"):
        spread_factor(samples, truth[:, :, :2])


def test_calibrated_spread_covers_the_calibration_series(fitted, worlds):
    _, test = worlds
    model = copy.copy(fitted)  # calibrating sets model.spread; the shared fixture stays raw
    cal = model.calibrate_spread(test, n_samples=19, seed=0)
    assert cal.series == test.n and cal.draws == 19 and cal.steps == 5 and cal.factor > 0
    raw = model.sample(test.media, test.controls, test.sales, 19, seed=0, calibrated=False)
    scaled = model.sample(test.media, test.controls, test.sales, 19, seed=0)
    assert ex.score_paths(ex.estimate_from_samples(raw, test), test)["coverage90"] == pytest.approx(cal.raw_coverage)
    assert ex.score_paths(ex.estimate_from_samples(scaled, test), test)["coverage90"] == pytest.approx(0.90, abs=0.01)
    assert np.allclose(scaled.beta, raw.widen(cal.factor).beta, rtol=1e-6)
    with pytest.raises(ValueError, match="calibrated with"):
        model.sample(test.media[:1], test.controls[:1], test.sales[:1], 4, project=False)
    assert model.sample(test.media[:1], test.controls[:1], test.sales[:1], 4, project=False, calibrated=False).beta.shape[1] == 4


def test_calibrate_spread_refuses_what_has_no_finite_factor(fitted, worlds):
    _, test = worlds
    model = copy.copy(fitted)
    with pytest.raises(ValueError, match="n_samples >= 2"):
        model.calibrate_spread(test, n_samples=1)
    # draws without spread, all off the truth: no factor widens them onto it
    flat = PathSamples(beta=np.repeat(test.beta[:, None] * 2.0, 3, axis=1), gamma=np.zeros((test.n, 3) + test.gamma.shape[1:]),
                       baseline=np.zeros((test.n, 3, test.config.n_weeks)), seconds=0.0)
    assert not np.isfinite(spread_factor(flat, test.beta))
    model.sample = lambda *args, **kwargs: flat
    with pytest.raises(ValueError, match="no finite factor"):
        model.calibrate_spread(test, n_samples=3)
    assert model.spread is None


def test_scores_against_known_answers():
    truth = np.exp(np.random.default_rng(0).normal(size=(4, 30, 2)))
    cfg = TVCConfig(n_weeks=30, channels=("a", "b"), beta_median=(1.0, 1.0), decay=(0.1, 0.1), on_share=(0.5, 0.5))
    w = simulate_tvc(cfg, 4, seed=0)
    w = TVCWorld(cfg, w.spend, w.media, w.controls, w.sales, truth, w.gamma, w.baseline, w.noise_sd)
    perfect = ex.PathEstimate(truth, lambda q: truth * (0.5 + q), w.sales, 0.0)
    sc = ex.score_paths(perfect, w)
    assert sc["corr"] == pytest.approx(1.0) and sc["rel_error"] == 0.0 and sc["mape_sales"] == 0.0
    assert sc["coverage90"] == 1.0  # truth*(0.55) <= truth <= truth*(1.45)
    assert np.allclose(ex.path_correlation(-truth, truth), -1.0)


def test_correlation_spread_of_subsets():
    cfg = TVCConfig(n_weeks=30, channels=("a", "b"), beta_median=(1.0, 1.0), decay=(0.1, 0.1), on_share=(0.5, 0.5))
    w = simulate_tvc(cfg, 6, seed=0)
    truth = np.exp(np.random.default_rng(1).normal(size=w.beta.shape))
    w = TVCWorld(cfg, w.spend, w.media, w.controls, w.sales, truth, w.gamma, w.baseline, w.noise_sd)
    perfect = ex.PathEstimate(truth, lambda q: truth, w.sales, 0.0)
    spread = ex.correlation_spread(perfect, w, size=3, draws=50)
    assert spread["all"] == pytest.approx(1.0) and spread["sd"] == pytest.approx(0.0, abs=1e-12)
    # half the series perfect, half anti-correlated: subsets of one series give +1 or -1
    est = truth.copy()
    est[3:] = 2 * truth[3:].mean(1, keepdims=True) - truth[3:]
    spread = ex.correlation_spread(ex.PathEstimate(est, lambda q: est, w.sales, 0.0), w, size=1, draws=400)
    assert spread["lo"] == pytest.approx(-1.0) and spread["hi"] == pytest.approx(1.0) and 0.9 < spread["sd"] <= 1.0
    with pytest.raises(ValueError, match="size"):
        ex.correlation_spread(perfect, w, size=7)


def test_bootstrap_scores_are_paired_and_bracket_the_score():
    cfg = TVCConfig(n_weeks=30, channels=("a", "b"), beta_median=(1.0, 1.0), decay=(0.1, 0.1), on_share=(0.5, 0.5))
    w = simulate_tvc(cfg, 40, seed=0)
    rng = np.random.default_rng(2)
    noisy = w.beta + 0.5 * w.beta.std() * rng.normal(size=w.beta.shape)
    noisier = w.beta + 1.5 * w.beta.std() * rng.normal(size=w.beta.shape)
    est = {"a": ex.PathEstimate(noisy, lambda q: noisy, w.sales, 0.0),
           "b": ex.PathEstimate(noisier, lambda q: noisier, w.sales, 0.0)}
    tab = ex.bootstrap_scores(est, w, reference="b", draws=300)
    assert tab.loc["a", "corr"] == pytest.approx(ex.score_paths(est["a"], w)["corr"])
    assert (tab["lo"] <= tab["corr"]).all() and (tab["corr"] <= tab["hi"]).all()
    assert tab.loc["b", ["diff", "diff_lo", "diff_hi"]].abs().max() == 0.0  # a method against itself
    assert 0 < tab.loc["a", "diff_lo"] <= tab.loc["a", "diff"] <= tab.loc["a", "diff_hi"]
    # pairing: the difference varies less over resamples than the sum of the two scores' spreads
    assert tab.loc["a", "diff_hi"] - tab.loc["a", "diff_lo"] < (tab["hi"] - tab["lo"]).sum()
    part = ex.restrict(est["a"], slice(0, 5))
    assert part.mean.shape[0] == 5 and part.quantile(0.5).shape == part.mean.shape


def test_log_kalman_estimate_counts_instead_of_warning(worlds):
    train, test = worlds
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, stuck = ex.estimate_from_log_kalman(LogKalmanTVC.calibrate(train, iterations=1), test)
    assert stuck == test.n
    assert ex.estimate_from_log_kalman(LogKalmanTVC.calibrate(train), test)[1] == 0


@pytest.mark.parametrize("kwargs, match", [({"iterations": 0}, "iterations"), ({"iterations": 2.5}, "iterations"),
                                           ({"iterations": True}, "iterations"), ({"tol": 0.0}, "tol"),
                                           ({"max_halvings": -1}, "max_halvings")])
def test_log_smoother_settings_are_checked_when_built(worlds, kwargs, match):
    """Checked by the dataclass itself, not only by ``calibrate``: a directly built smoother
    with no Gauss-Newton pass would return the prior as if it were a posterior."""
    prior = LogKalmanTVC.calibrate(worlds[0]).prior
    with pytest.raises(ValueError, match=match):
        LogKalmanTVC(prior, **kwargs)
    with pytest.raises(ValueError, match="iterations"):
        LogKalmanTVC.calibrate(worlds[0], iterations=0)


def test_models_trained_side_by_side_are_those_trained_one_by_one(worlds):
    """Two configurations trained a model per core give the models of a one-process run (each
    trains on one thread either way), in the order of the configurations."""
    train, valid = worlds
    configs = [DiffusionConfig(d_model=16, heads=2, steps=10, ddim_steps=4, epochs=1, batch_size=100),
               DiffusionConfig(d_model=16, heads=2, steps=10, ddim_steps=4, epochs=1, batch_size=100, kalman=False)]
    alone = ex.fit_side_by_side(configs, train, valid, seed=4, workers=1)
    paired = ex.fit_side_by_side(configs, train, valid, seed=4, workers=2)
    assert [m.config for m in paired] == configs
    for a, b in zip(alone, paired, strict=True):
        assert a.history == b.history
        assert all(torch.equal(x, y) for x, y in zip(a.net.state_dict().values(), b.net.state_dict().values(), strict=True))
        sa = a.sample(valid.media[:2], valid.controls[:2], valid.sales[:2], 3, seed=1, calibrated=False)
        sb = b.sample(valid.media[:2], valid.controls[:2], valid.sales[:2], 3, seed=1, calibrated=False)
        np.testing.assert_array_equal(sa.beta, sb.beta)
    assert alone[0].history != alone[1].history  # the configurations differ
