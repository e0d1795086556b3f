"""mmmlib.bayes.model: the LightweightMMM-style model, its outputs and their consistency.

Recovery against the simulated truth is measured in Chapter 1 (a benchmark, not a unit test);
these tests check that the outputs are what they claim to be.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from mmmlib.bayes.model import MODELS, BayesianMMM, media_transform
from mmmlib.runtime import setup
from mmmlib.worlds import easy_world


@pytest.fixture(scope="module")
def world():
    return easy_world(seed=2, n_weeks=52)


@pytest.fixture(scope="module")
def fitted(world):
    setup(0)
    return BayesianMMM("hill_adstock").fit(world.data, inference="svi", svi_steps=300, num_samples=100, chains=1, seed=0)


def test_summaries_have_the_documented_shape(fitted, world):
    for table in (fitted.roi(), fitted.contribution_share()):
        assert list(table.columns) == ["mean", "median", "lo", "hi"]
        assert list(table.index) == list(world.truth.channels)
        assert (table["lo"] <= table["median"]).all() and (table["median"] <= table["hi"]).all()
    assert fitted.contribution_share()["mean"].sum() == pytest.approx(1.0)
    d = fitted.diagnostics()
    assert d.inference == "svi" and d.num_draws == 100 and d.divergences == 0


def test_roi_is_contribution_over_spend(fitted, world):
    draws = fitted.contribution_draws()  # (S, T, C)
    roi = draws.sum(axis=1) / world.truth.spend.sum().to_numpy()[None, :]
    np.testing.assert_allclose(fitted.roi()["mean"].to_numpy(), roi.mean(axis=0), rtol=1e-12)


def test_contributions_follow_the_media_transform(fitted, world):
    """Draw 0's contribution equals beta * f(media / mean media) * mean(target), recomputed by hand."""
    s = {k: v[0] for k, v in fitted.samples_.items()}
    media = torch.as_tensor(world.data.media_array() / world.data.media_array().mean(axis=0))
    f = media_transform("hill_adstock", media, s).numpy()
    expected = f * s["coef_media"].numpy()[None, :] * world.data.target_array().mean()
    np.testing.assert_allclose(fitted.contribution_draws()[0], expected, rtol=1e-10)


def test_contributions_and_baseline_add_up_to_the_prediction(fitted, world):
    c = fitted.contributions()
    pred = fitted.predict(world.data)
    np.testing.assert_allclose(c.sum(axis=1).to_numpy(), pred["mean"].to_numpy(), rtol=1e-10)
    assert (pred["lo_obs"] <= pred["lo"]).all() and (pred["hi"] <= pred["hi_obs"]).all()


def test_prediction_with_history_continues_the_carryover(fitted, world):
    train, test = world.data.split(8)
    joined = fitted.predict_draws(world.data)[:, -8:]
    np.testing.assert_allclose(fitted.predict_draws(test, history=train), joined, rtol=1e-10)
    # without history the adstock restarts from zero and the prediction differs
    assert not np.allclose(fitted.predict_draws(test), joined)


def test_response_curve_is_the_steady_state_of_a_constant_spend(fitted, world):
    """Feeding a long constant spend through the fitted transforms converges to response_draws."""
    c, ch = 1, world.truth.channels[1]
    spend = float(world.truth.spend[ch].mean())
    curve = fitted.response_draws(ch, np.array([spend]))[:, 0]
    media = np.tile(world.data.media_array().mean(axis=0), (4000, 1))  # long enough for lag weights near 1
    media[:, c] = spend / fitted.price_[c]
    eff = fitted._media_effect(torch.as_tensor(media / fitted.media_scale_)).numpy()[:, -1, c]
    np.testing.assert_allclose(eff * world.data.target_array().mean(), curve, rtol=1e-6)
    rc = fitted.response_curves(n_points=5)
    assert set(rc["channel"]) == set(world.truth.channels) and (rc.groupby("channel")["mean"].first() == 0).all()


@pytest.mark.parametrize("model", MODELS)
def test_every_model_fits_national_and_geo(model):
    setup(0)
    for n_geos in (1, 3):
        w = easy_world(seed=1, n_weeks=30, n_geos=n_geos)
        m = BayesianMMM(model).fit(w.data, inference="svi", svi_steps=60, num_samples=20, chains=1, seed=1)
        roi = m.roi()
        assert np.isfinite(roi.to_numpy()).all() and (roi["mean"] >= 0).all()
        assert m.predict(w.data).shape == (30, 5)


def test_same_seed_same_posterior(world):
    def fit():
        setup(0)
        return BayesianMMM().fit(world.data, inference="svi", svi_steps=50, num_samples=20, chains=1, seed=4).roi()

    pd.testing.assert_frame_equal(fit(), fit())


def test_nuts_reports_diagnostics():
    setup(0)
    w = easy_world(seed=0, n_weeks=26)
    m = BayesianMMM("adstock").fit(w.data, inference="nuts", num_warmup=15, num_samples=10, chains=2, seed=0)
    d = m.diagnostics()
    assert d.inference == "nuts" and d.num_draws == 20
    assert np.isfinite(d.max_rhat) and d.min_ess > 0 and d.divergences >= 0
    assert {"mean", "sd", "rhat", "ess"} <= set(d.table.columns)


def test_tree_depth_cap_is_respected_and_counted():
    w = easy_world(seed=0, n_weeks=26)
    m = BayesianMMM("hill_adstock").fit(w.data, num_warmup=20, num_samples=20, chains=1, seed=0, max_tree_depth=2)
    d = m.diagnostics()
    assert d.mean_leapfrog <= 3.0  # at most 2**2 - 1 gradients per draw
    assert 0 <= d.tree_depth_hits <= 20 and d.tree_depth_hits == int((m.nuts_.tree_depth >= 2).sum())
    with pytest.raises(ValueError, match="max_tree_depth"):
        BayesianMMM().fit(w.data, max_tree_depth=0)


def test_roi_coordinates_give_the_cost_prior_sites():
    """Sampling the cost prior in ROI coordinates reports the same sites as the native fit."""
    w = easy_world(seed=0, n_weeks=26)
    kw = dict(num_warmup=20, num_samples=10, chains=1, seed=0)
    native = BayesianMMM("adstock").fit(w.data, **kw)
    in_roi = BayesianMMM("adstock").fit(w.data, coordinates="roi", **kw)
    assert set(native.samples_) == set(in_roi.samples_) and "roi" not in in_roi.samples_
    assert np.isfinite(in_roi.roi().to_numpy()).all()
    in_level = BayesianMMM("adstock").fit(w.data, coordinates="level", **kw)
    assert set(native.samples_) == set(in_level.samples_)


@pytest.mark.parametrize("inference", ["nuts", "svi"])
def test_roi_prior_samples_in_level_coordinates_and_reports_the_intercept(inference):
    """The ROI prior's default coordinates are ``level``: the draws carry the model's sites
    (intercept, roi, coef_media), not the sampler's level, and the intercept stays positive."""
    w = easy_world(seed=0, n_weeks=26)
    kw = dict(num_warmup=20, num_samples=10, chains=1, seed=0, svi_steps=50)
    m = BayesianMMM("adstock", media_prior="roi").fit(w.data, inference=inference, **kw)
    assert "level" not in m.samples_ and {"intercept", "roi", "coef_media"} <= set(m.samples_)
    assert (m.samples_["intercept"] > 0).all()
    with pytest.raises(ValueError, match="native"):
        BayesianMMM("adstock", media_prior="roi").fit(w.data, coordinates="native", **kw)
    with pytest.raises(ValueError, match="coordinates"):
        BayesianMMM("adstock").fit(w.data, coordinates="beta", **kw)


@pytest.mark.parametrize(
    "kwargs, match",
    [(dict(model="linear"), "model"), (dict(media_prior="uniform"), "media_prior"), (dict(trend_index="days"), "trend_index")],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianMMM(**kwargs)


def test_bad_inference_and_unfitted_use(world):
    with pytest.raises(ValueError, match="inference"):
        BayesianMMM().fit(world.data, inference="laplace")
    with pytest.raises(RuntimeError, match="fit"):
        BayesianMMM().roi()


def test_model_response_is_the_posterior_mean_curve(fitted, world):
    from mmmlib.optimize import model_response

    spend = world.truth.spend.mean().to_numpy()
    expected = sum(fitted.response_draws(ch, np.array([s]))[:, 0].mean() for ch, s in zip(world.truth.channels, spend, strict=True))
    assert model_response(fitted)(spend) == pytest.approx(expected, rel=1e-12)


def test_nuts_diagnostics_are_arviz_and_export_as_inference_data(tmp_path):
    import arviz as az

    setup(0)
    w = easy_world(seed=0, n_weeks=26)
    m = BayesianMMM("adstock", media_prior="roi").fit(w.data, num_warmup=30, num_samples=40, chains=2, seed=0)
    idata = m.to_inference_data()
    assert idata.posterior["roi"].dims == ("chain", "draw", "channel")
    assert list(idata.posterior["channel"].values) == list(w.truth.channels)
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 40
    assert int(idata.sample_stats["diverging"].sum()) == m.diagnostics().divergences
    # the diagnostics table is ArviZ's rank-normalised R-hat of the same draws
    expected = float(az.rhat(idata, var_names=["sigma"])["sigma"])
    assert m.diagnostics().table.loc["sigma", "rhat"] == pytest.approx(expected, rel=1e-9)
    assert m.diagnostics().max_rhat == pytest.approx(float(m.diagnostics().table["rhat"].max()))
    np.testing.assert_allclose(idata.posterior["coef_media"].values.reshape(80, -1), m.samples_["coef_media"].numpy())
    path = tmp_path / "fit.nc"
    idata.to_netcdf(path)
    assert az.from_netcdf(path).posterior.attrs["model"] == "adstock"


def test_svi_exports_one_chain_of_guide_draws(fitted, world):
    idata = fitted.to_inference_data()
    assert idata.posterior.sizes["chain"] == 1 and idata.posterior.sizes["draw"] == 100
    assert idata.posterior.attrs["inference"] == "svi"


def test_a_failed_refit_leaves_the_model_as_it_was(world):
    """fit() is all or nothing: a refit that fails keeps the old scaling with the old draws."""
    setup(0)
    m = BayesianMMM("adstock").fit(world.data, inference="svi", svi_steps=50, num_samples=20, chains=1, seed=0)
    before = m.roi()
    other = easy_world(seed=9, n_weeks=52)
    frame = other.data.frame.copy()
    frame["sales"] = frame["sales"] * 5.0
    bigger = dataclasses.replace(other.data, frame=frame)
    with pytest.raises(ValueError, match="svi_steps|num_samples|chains"):
        m.fit(bigger, inference="svi", svi_steps=50, num_samples=0, chains=1)
    pd.testing.assert_frame_equal(m.roi(), before)

    class Boom(RuntimeError):
        pass

    def explode(*args, **kwargs):
        raise Boom("interrupted")

    m._run_advi_numpy = explode  # fails after the new data were scaled
    with pytest.raises(Boom):
        m.fit(bigger, inference="svi", svi_steps=50, num_samples=20, chains=1)
    pd.testing.assert_frame_equal(m.roi(), before)


def test_geo_svi_runs_under_a_float32_default_dtype():
    """A user who never called mmmlib.runtime.setup has torch's float32 default: the geo model
    (Pyro's SVI) must still fit, in float64."""
    w = easy_world(seed=1, n_weeks=30, n_geos=3)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        m = BayesianMMM("hill_adstock").fit(w.data, inference="svi", svi_steps=30, num_samples=20, chains=1, seed=0)
        assert torch.get_default_dtype() == torch.float32
    finally:
        torch.set_default_dtype(old)
    assert m.samples_["coef_media_geo"].dtype == torch.float64
    assert m.samples_["coef_media_geo"].shape == (20, 4, 3)
    assert np.isfinite(m.roi().to_numpy()).all()


@pytest.mark.parametrize("inference", ["svi", "nuts"])
def test_a_twenty_geo_panel_fits_without_any_set_up(inference):
    """20 geos, torch's float32 default, no runtime.setup: SVI and NUTS fit in float64 and give
    finite national and per-geo ROI (a panel the size of a regional business)."""
    w = easy_world(seed=2, n_weeks=26, n_geos=20)
    kw = dict(svi_steps=40, num_samples=20, chains=1) if inference == "svi" else dict(num_warmup=8, num_samples=8, chains=1)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        m = BayesianMMM("adstock").fit(w.data, inference=inference, seed=0, **kw)
    finally:
        torch.set_default_dtype(old)
    assert m.samples_["coef_media_geo"].dtype == torch.float64
    assert m.samples_["coef_media_geo"].shape[1:] == (4, 20)
    assert np.isfinite(m.roi().to_numpy()).all() and np.isfinite(m.roi(by_geo=True).to_numpy()).all()
    assert len(m.roi(by_geo=True)) == 80


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [(dict(inference="svi", svi_lr=-1.0), "svi_lr"), (dict(inference="svi", svi_steps=0), "svi_steps"),
     (dict(target_accept_prob=1.5), "target_accept_prob")],
)
def test_bad_fit_arguments_are_named(world, kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianMMM().fit(world.data, **kwargs)


@pytest.mark.parametrize(("column", "match"), [("sales", "target column 'sales'"), ("spend_search", "channel 'search' has no spend")])
def test_degenerate_data_is_refused(world, column, match):
    frame = world.data.frame.copy()
    frame[column] = 0.0
    with pytest.raises(ValueError, match=match):
        BayesianMMM().fit(dataclasses.replace(world.data, frame=frame), inference="svi", svi_steps=10)


def test_oracle_roi_is_least_squares_on_the_true_features():
    """The oracle's unrestricted estimate is statsmodels' OLS on the same design; its posterior
    restricted to non-negative effects is exact without noise and covers the truth."""
    import statsmodels.api as sm

    from mmmlib.bayes.evaluate import oracle_roi
    from mmmlib.transforms import adstock, fourier_features, hill

    w = easy_world(seed=4, n_weeks=104)
    table = oracle_roi(w)
    p = w.truth.params
    f = hill(adstock(w.data.media_array() / p["media_scale"].to_numpy(copy=True), p["decay"].to_numpy(copy=True)),
             p["half_saturation"].to_numpy(copy=True), p["slope"].to_numpy(copy=True)).numpy()
    X = np.column_stack([np.ones(104), np.arange(104.0), fourier_features(104, 52.0, 2).numpy(), w.data.controls_array(), f])
    ols = sm.OLS(w.data.target_array(), X).fit()
    to_roi = f.sum(axis=0) / w.data.spend_array().sum(axis=0)
    np.testing.assert_allclose(table["ols"], ols.params[-4:] * to_roi, rtol=1e-8)
    assert (table["lo"] >= 0).all() and (table["lo"] <= table["median"]).all() and (table["median"] <= table["hi"]).all()
    quiet = easy_world(seed=4, n_weeks=104, noise_cv=0.0)
    np.testing.assert_allclose(oracle_roi(quiet)["median"], quiet.truth.roi.to_numpy(), rtol=1e-6)


def test_positive_gaussian_draws_match_a_truncated_normal():
    """The Gibbs draws of a Gaussian restricted to beta >= 0 against scipy's truncated normal
    (independent coordinates) and against rejection sampling (correlated ones)."""
    from scipy import stats

    from mmmlib.bayes.evaluate import positive_gaussian_draws

    mean, sd = np.array([0.5, -1.0]), np.array([1.0, 0.7])
    x = positive_gaussian_draws(mean, np.diag(sd**2), 20000, seed=1)
    for j in range(2):
        ref = stats.truncnorm(-mean[j] / sd[j], np.inf, loc=mean[j], scale=sd[j])
        assert stats.kstest(x[:, j], ref.cdf).pvalue > 1e-3
    cov = np.array([[1.0, 0.8], [0.8, 1.0]])
    x = positive_gaussian_draws(np.array([0.3, 0.2]), cov, 20000, seed=2)
    raw = np.random.default_rng(3).multivariate_normal([0.3, 0.2], cov, size=200000)
    raw = raw[(raw >= 0).all(axis=1)]
    np.testing.assert_allclose(x.mean(axis=0), raw.mean(axis=0), atol=0.03)
    np.testing.assert_allclose(np.median(x, axis=0), np.median(raw, axis=0), atol=0.03)


def test_per_geo_contributions_and_roi_are_public_and_computed_once(monkeypatch):
    w = easy_world(seed=2, n_weeks=30, n_geos=3)
    m = BayesianMMM(model="hill_adstock").fit(w.data, inference="svi", svi_steps=50, num_samples=10, chains=2)
    calls = []
    original = BayesianMMM._media_effect
    monkeypatch.setattr(BayesianMMM, "_media_effect", lambda self, x: calls.append(1) or original(self, x))
    per_geo = m.contribution_draws(by_geo=True)
    assert per_geo.shape == (20, 30, 4, 3)
    np.testing.assert_allclose(per_geo.sum(axis=-1), m.contribution_draws())
    table = m.roi(by_geo=True)
    assert table.index.names == ["geo", "channel"] and len(table) == 12
    spend = w.data.spend_array().sum(axis=0)  # (C, G)
    g, c = 1, 2
    expected = per_geo[:, :, c, g].sum(axis=1) / spend[c, g]
    row = table.loc[(w.data.geos[g], w.data.channels[c])]
    assert row["mean"] == pytest.approx(expected.mean())
    assert row["lo"] == pytest.approx(np.quantile(expected, 0.05))
    m.roi()
    m.contribution_share()
    assert len(calls) == 1  # one pass over the posterior for all of them
    m.samples_ = {k: v[:5] for k, v in m.samples_.items()}  # new draws: recomputed
    assert m.contribution_draws().shape[0] == 5 and len(calls) == 2
    national = BayesianMMM(model="adstock").fit(easy_world(seed=2, n_weeks=30).data, inference="svi",
                                                svi_steps=20, num_samples=5, chains=1)
    with pytest.raises(ValueError, match="geo panel"):
        national.roi(by_geo=True)


def test_post_fit_methods_before_fit_or_with_bad_arguments_say_what_is_wrong():
    m = BayesianMMM("adstock")
    for call in (m.response_curves, m.roi, m.contribution_share):
        with pytest.raises(RuntimeError, match="call fit"):
            call()
    m.fit(easy_world(seed=2, n_weeks=30).data, inference="svi", svi_steps=20, num_samples=5, chains=1)
    with pytest.raises(ValueError, match="unknown channel 'radio'"):
        m.response_draws("radio", np.array([1.0]))
    with pytest.raises(ValueError, match="n_points"):
        m.response_curves(n_points=1)


def test_data_roi_prior_is_in_the_data_units():
    """The data-derived centre is near the fixed default on Chapter 0's worlds (where target and
    spend are both money) and moves with the target's units."""
    from mmmlib.bayes.model import data_roi_prior
    from mmmlib.scoreboard.suite import make_world

    train = make_world("easy").split()[0]
    mu, sigma = data_roi_prior(train)
    assert mu == pytest.approx(0.2, abs=0.1) and sigma == 0.9
    shrunk = dataclasses.replace(train, frame=train.frame.assign(**{train.target: train.frame[train.target] / 1000}))
    assert data_roi_prior(shrunk)[0] == pytest.approx(mu - np.log(1000))
    assert data_roi_prior(shrunk, revenue_per_kpi=1000)[0] == pytest.approx(mu)
    for kwargs, match in [({"media_share": 0}, "media_share"), ({"sigma": -1}, "sigma")]:
        with pytest.raises(ValueError, match=match):
            data_roi_prior(train, **kwargs)


def test_revenue_per_kpi_gives_roi_in_revenue(world):
    """A target in thousands with revenue_per_kpi=1000 is the same model: same ROI, same prior."""
    kpi = dataclasses.replace(world.data, frame=world.data.frame.assign(
        **{world.data.target: world.data.frame[world.data.target] / 1000}))
    kw = dict(inference="svi", svi_steps=200, num_samples=50, chains=1, seed=0)
    setup(0)
    money = BayesianMMM(media_prior="roi").fit(world.data, **kw)
    setup(0)
    counted = BayesianMMM(media_prior="roi", revenue_per_kpi=1000).fit(kpi, **kw)
    np.testing.assert_allclose(counted.roi().to_numpy(), money.roi().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(counted.contribution_draws(), money.contribution_draws() / 1000, rtol=1e-6)
    setup(0)
    resolved = BayesianMMM(media_prior="roi", roi_prior="data").fit(world.data, **kw)
    from mmmlib.bayes.model import data_roi_prior

    assert resolved.roi_prior == "data" and resolved.roi_prior_ == data_roi_prior(world.data)
    for kwargs, match in [({"revenue_per_kpi": 0}, "revenue_per_kpi"), ({"roi_prior": "meridian"}, "roi_prior"),
                          ({"roi_prior": (float("nan"), 1.0)}, "roi_prior")]:
        with pytest.raises(ValueError, match=match):
            BayesianMMM(**kwargs)


def test_prior_roi_draws_match_a_direct_monte_carlo(fitted, world):
    """The cost prior's implied ROI, from the model's own trace, against the same prior sampled
    by hand with torch.distributions (two-sample KS test)."""
    from scipy import stats

    n = 1500
    ours = fitted.prior_roi_draws(n, seed=1)
    C = len(world.data.channels)
    torch.manual_seed(5)
    cost = torch.as_tensor(fitted.cost_prior_)
    coef = torch.distributions.HalfNormal(cost).sample((n,))
    params = {"lag_weight": torch.distributions.Beta(2.0, 1.0).sample((n, C)),
              "half_max_effective_concentration": torch.distributions.Gamma(1.0, 1.0).sample((n, C)),
              "slope": torch.distributions.Gamma(1.0, 1.0).sample((n, C))}
    media = torch.as_tensor(world.data.media_array() / world.data.media_array().mean(axis=0))
    f = media_transform("hill_adstock", media.unsqueeze(-1).expand(*media.shape, n), {k: v.T for k, v in params.items()})
    contrib = (f.sum(dim=0).T * coef).numpy() * world.data.target_array().mean()
    direct = contrib / world.data.spend_array().sum(axis=0)[None, :]
    for c in range(C):
        assert stats.ks_2samp(ours[:, c], direct[:, c]).pvalue > 1e-3, world.data.channels[c]
    state = torch.get_rng_state()
    fitted.prior_roi_draws(10, seed=3)
    assert torch.equal(state, torch.get_rng_state())  # the global random state is left alone


def test_roi_contraction_flags_channels_the_data_did_not_inform(world):
    """With the ROI prior, its prior sd is s; a channel whose spend is only noise-sized and
    constant (nothing to learn from) keeps the prior's spread, the others narrow."""
    frame = world.data.frame.copy()
    flat = world.data.media[-1]
    frame[flat] = frame[flat].mean()  # constant media: its effect is confounded with the intercept
    data = dataclasses.replace(world.data, frame=frame)
    setup(0)
    mmm = BayesianMMM(media_prior="roi").fit(data, inference="svi", svi_steps=600, num_samples=400, chains=1, seed=0)
    table = mmm.roi_contraction()
    assert list(table.columns) == ["prior_sd", "posterior_sd", "sd_ratio", "prior_dominated", "posterior_median"]
    assert (table["prior_sd"] == mmm.roi_prior_[1]).all()
    assert table.loc[world.data.channels[-1], "sd_ratio"] > table["sd_ratio"].iloc[:-1].min()
    assert not table["prior_dominated"].all()


def test_save_and_load_methods_round_trip(fitted, world, tmp_path):
    path = fitted.save(tmp_path / "model.pkl")
    back = BayesianMMM.load(path)
    pd.testing.assert_frame_equal(back.roi(), fitted.roi())
    pd.testing.assert_frame_equal(back.predict(world.data), fitted.predict(world.data))
    import pickle

    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"not": "a model"}))
    with pytest.raises(ValueError, match="not an mmmlib model"):
        BayesianMMM.load(tmp_path / "other.pkl")


def test_jit_traced_svi_computes_the_same_elbo_as_the_plain_one():
    """The geo SVI fit runs a JIT-traced ELBO for speed; it must compute the same objective.

    After one call that compiles it, the traced ELBO given the same random draw of the guide equals
    the plain one to rounding, at several draws.
    """
    import pyro
    from pyro.infer import JitTrace_ELBO, Trace_ELBO
    from pyro.infer.autoguide import AutoLowRankMultivariateNormal

    w = easy_world(seed=1, n_weeks=30, n_geos=3)
    m = BayesianMMM(media_prior="cost")
    m._scales(w.data)
    prep = m._prepare(w.data)
    args = (prep.media, prep.controls, prep.seasonal, prep.t_index)
    pyro.clear_param_store()
    guide = AutoLowRankMultivariateNormal(m._model)
    guide(*args, target=prep.target)
    plain, jit = Trace_ELBO(), JitTrace_ELBO(ignore_jit_warnings=True)
    jit.loss(m._model, guide, *args, target=prep.target)  # compiles
    for seed in range(4):
        values = []
        for elbo in (plain, jit):
            pyro.set_rng_seed(seed)
            values.append(elbo.loss(m._model, guide, *args, target=prep.target))
        assert values[1] == pytest.approx(values[0], rel=1e-9)


@pytest.mark.parametrize(("inference", "backend"), [("svi", "numpy"), ("svi", "pyro"), ("nuts", "numpy")])
def test_a_channel_can_have_its_own_roi_prior(inference, backend):
    """A tight prior on one channel's ROI (as from an experiment) holds that channel there and leaves
    the others on the shared prior."""
    w = easy_world(seed=1, n_weeks=40)
    kw = dict(num_warmup=150, num_samples=150, chains=1) if inference == "nuts" else dict(svi_steps=600, num_samples=300)
    m = BayesianMMM(media_prior="roi", roi_prior=(0.0, 1.0), roi_prior_by_channel={"search": (np.log(7.0), 0.02)})
    m.fit(w.data, inference=inference, backend=backend, seed=0, **kw)
    assert list(m.roi_prior_mu_) == [0.0, np.log(7.0), 0.0, 0.0]
    assert list(m.roi_prior_sigma_) == [1.0, 0.02, 1.0, 1.0]
    roi = m.roi()["median"]
    assert roi["search"] == pytest.approx(7.0, rel=0.1)
    assert not roi.drop("search").between(6.3, 7.7).all()
    assert m.roi_contraction().loc["search", "prior_sd"] == pytest.approx(0.02)


@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(roi_prior_by_channel={"tv": (0.0, 0.0)}), r"roi_prior_by_channel\['tv'\]"),
    (dict(roi_prior_by_channel={"tv": (float("nan"), 1.0)}), r"roi_prior_by_channel\['tv'\]"),
    (dict(media_prior="cost", roi_prior_by_channel={"tv": (0.0, 1.0)}), "needs media_prior='roi'"),
])
def test_bad_channel_roi_priors_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BayesianMMM(**{"media_prior": "roi", **kwargs})


def test_a_channel_roi_prior_must_name_a_channel_of_the_data():
    w = easy_world(seed=1, n_weeks=30)
    with pytest.raises(ValueError, match=r"not in the data: \['radio'\]"):
        BayesianMMM(media_prior="roi", roi_prior_by_channel={"radio": (0.0, 1.0)}).fit(w.data, inference="svi", svi_steps=5)


def test_cost_prior_is_scaled_as_lightweightmmms_readme_scales_the_costs(world):
    """v_m = 0.15 * cost_m / mean cost by default (LightweightMMM's README: multiply_by=0.15); the
    factor is a named parameter, and 1 gives the unscaled cost shares."""
    spend = world.data.spend_array().sum(axis=0)
    for factor in (0.15, 1.0):
        m = BayesianMMM(media_prior="cost", cost_prior_multiplier=factor) if factor != 0.15 else BayesianMMM()
        m._scales(world.data)
        np.testing.assert_allclose(m.cost_prior_, factor * spend / spend.mean())
    assert BayesianMMM().cost_prior_multiplier == 0.15
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="cost_prior_multiplier"):
            BayesianMMM(cost_prior_multiplier=bad)


def test_a_roi_prior_in_other_units_than_the_target_is_named(world, recwarn):
    """A KPI in conversions with the currency default: at the prior's median ROI media would make
    thousands of times the target, and the fit says so; in currency, or with roi_prior='data', not."""
    import warnings

    conversions = dataclasses.replace(world.data, frame=world.data.frame.assign(
        **{world.data.target: world.data.frame[world.data.target] / 1e4}))
    with pytest.warns(UserWarning, match=r"revenue_per_kpi.*roi_prior='data'"):
        BayesianMMM(media_prior="roi")._scales(conversions)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        BayesianMMM(media_prior="roi")._scales(world.data)
        BayesianMMM(media_prior="roi", roi_prior="data")._scales(conversions)
        BayesianMMM(media_prior="roi", revenue_per_kpi=1e4)._scales(conversions)
        BayesianMMM(media_prior="cost")._scales(conversions)


def _sparse_geo_panel(seed: int = 0):
    """8 geos x 78 weeks, 8 channels (two worlds' channels side by side), 24-76% of each channel's
    weeks without spend: the kind of panel on which the low-rank SVI guide once failed."""
    from mmmlib.data import MediaDataset
    from mmmlib.worlds import hard_world

    rng = np.random.default_rng(seed)
    a, b = easy_world(seed, n_weeks=78, n_geos=8), hard_world(seed + 1, n_weeks=78, n_geos=8)
    frame = a.data.frame[[a.data.date, a.data.geo]].copy()
    frame["sales"] = a.data.frame[a.data.target].to_numpy() + b.data.frame[b.data.target].to_numpy()
    media, spend = [], []
    for k, w in enumerate((a, b)):
        for m, s in zip(w.data.media, w.data.spend, strict=True):
            off = rng.uniform(size=len(frame)) < rng.uniform(0.24, 0.76)
            frame[f"m{k}_{m}"] = np.where(off, 0.0, w.data.frame[m].to_numpy())
            frame[f"s{k}_{s}"] = np.where(off, 0.0, w.data.frame[s].to_numpy())
            media.append(f"m{k}_{m}")
            spend.append(f"s{k}_{s}")
    return MediaDataset(frame, a.data.date, tuple(media), tuple(spend), "sales", geo=a.data.geo)


def test_geo_svi_fits_a_sparse_panel_at_twenty_seeds():
    """The low-rank guide on 8 geos x 8 channels with many zero-spend weeks: no seed of 20 fails,
    and every ROI is finite."""
    data = _sparse_geo_panel()
    for seed in range(20):
        m = BayesianMMM().fit(data, inference="svi", svi_steps=40, num_samples=20, chains=1, seed=seed)
        assert np.isfinite(m.roi().to_numpy()).all(), seed


def test_a_failed_svi_run_is_restarted_with_smaller_steps_then_named(world, monkeypatch):
    """A run whose loss turns non-finite (or whose guide's Cholesky fails) restarts with half the
    learning rate and initial scale; after three failures the error says what to try."""
    data = easy_world(seed=1, n_weeks=30, n_geos=2).data
    real = BayesianMMM._svi_attempt
    seen = []

    def flaky(self, args, target, steps, lr, init_scale, progress):
        seen.append((lr, init_scale))
        if len(seen) == 1:
            return None, [], "step 0: linalg.cholesky: The factorization could not be completed"
        return real(self, args, target, steps, lr, init_scale, progress)

    monkeypatch.setattr(BayesianMMM, "_svi_attempt", flaky)
    m = BayesianMMM().fit(data, inference="svi", svi_steps=20, svi_lr=0.02, num_samples=10, chains=1, seed=0)
    assert seen == [(0.02, 0.1), (0.01, 0.05)] and m.svi_restarts_ == 1
    monkeypatch.setattr(BayesianMMM, "_svi_attempt", lambda *a: (None, [], "step 3: loss nan"))
    with pytest.raises(RuntimeError, match=r"SVI failed three times \(step 3: loss nan\).*inference='nuts'"):
        BayesianMMM().fit(data, inference="svi", svi_steps=20, num_samples=10, chains=1, seed=0)


def test_a_fit_that_misses_the_criterion_is_refitted_once_with_longer_warmup(world, monkeypatch):
    from mmmlib.bayes import evaluate

    calls = []

    def fake(spec, w, seed=0):
        calls.append(spec)
        bad = len(calls) == 1
        return None, {"inference": "nuts", "max_rhat": 1.05 if bad else 1.001, "divergence_rate": 0.0, "seconds": 1.0}

    monkeypatch.setattr(evaluate, "fit_and_score", fake)
    spec = evaluate.FitSpec("x", num_warmup=300, target_accept_prob=0.85)
    _, row = evaluate.fit_converged(spec, world)
    assert [c.num_warmup for c in calls] == [300, 600] and calls[1].target_accept_prob == 0.95
    assert row["refit"] and row["converged"] and row["seconds"] == 2.0
    calls.clear()
    _, row = evaluate.fit_converged(spec, world, refit=False)
    assert len(calls) == 1 and not row["refit"] and not row["converged"]
