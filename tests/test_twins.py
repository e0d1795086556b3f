"""Tests of Chapter 4: the survey world, factor analysis, the twin model and its experiments."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyro
import pytest
import torch

from mmmlib.runtime import setup
from mmmlib.twins import experiment as tw
from mmmlib.twins.data import SurveyData
from mmmlib.twins.factor import choose_n_factors, discretised_log_prob, fit_factor_analysis
from mmmlib.twins.model import (
    TwinConfig,
    TwinModel,
    _IterateAverage,
    lever_search,
    ordinal_log_prob,
)
from mmmlib.twins.world import (
    SurveyConfig,
    expected_score,
    lever_response,
    ordinal_probs,
    simulate_survey,
)


@pytest.fixture(scope="module")
def world():
    return simulate_survey(SurveyConfig(n_respondents=1500), seed=3)


@pytest.fixture(scope="module")
def fitted(world):
    setup(0)
    train, test = tw.split_respondents(world.data.n, 0.2, 0)
    model = TwinModel(TwinConfig(batch_size=100, epochs=25, predictive_epochs=4)).fit(world.data.subset(train))
    return model, train, test


# ----------------------------------------------------------------------------- world
def test_world_shapes_ranges_and_truth(world):
    d, t = world.data, world.truth
    n, k, j = d.y.shape
    assert (n, k, j) == (1500, 5, 15)
    assert d.levers.shape == (n, k, 3) and t.theta.shape == (n, k, 3) and t.z.shape == (n, 3)
    assert np.all(d.y >= 0) and np.all(d.y < np.asarray(d.n_categories))
    assert np.allclose(t.brand_position.sum(0), 0.0)
    assert all(np.all(np.diff(c) > 0) for c in t.cutpoints)
    # every category of every item is used
    for jj, c in enumerate(d.n_categories):
        assert len(np.unique(d.y[..., jj])) == c


def test_answers_follow_the_ordered_logistic_law(world):
    """Mean answer equals the mean expected score under the true utilities (law of the simulator)."""
    d, t = world.data, world.truth
    for j in (0, 12, 14):
        u = t.intercepts[j] + t.theta @ t.loadings[j]
        expect = expected_score(u, t.cutpoints[j]).mean()
        se = d.y[..., j].std() / np.sqrt(d.y[..., j].size)
        assert abs(d.y[..., j].mean() - expect) < 4 * se


def test_ordinal_probs_and_expected_score():
    cuts = np.array([-1.0, 0.0, 2.0])
    u = np.linspace(-4, 4, 9)
    p = ordinal_probs(u, cuts)
    assert np.allclose(p.sum(-1), 1.0) and np.all(p >= 0)
    assert np.all(np.diff(expected_score(u, cuts)) > 0)


def test_true_effect_is_zero_without_action_and_positive_for_raised_levers(world):
    rows = np.arange(200)
    assert world.true_effect(rows, 0, np.zeros(3)) == 0.0
    for m in range(3):
        assert world.true_effect(rows, 1, np.eye(3)[m]) > 0
    assert all(np.all(np.diff(lever_response(m, np.linspace(-3, 3, 50))) > 0) for m in range(3))
    with pytest.raises(ValueError, match="lever index"):
        lever_response(3, np.zeros(2))


def test_bad_survey_input_names_the_place(world):
    d = world.data
    y = d.y.copy()
    y[3, 1, 12] = 11
    with pytest.raises(ValueError, match=r"item 'affinity' about brand 'Boreal' in respondent row 3"):
        dataclasses.replace(d, y=y)
    lev = d.levers.copy()
    lev[7, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"lever 'ad awareness' of brand 'Cirrus' in respondent row 7"):
        dataclasses.replace(d, levers=lev)
    with pytest.raises(ValueError, match="integer"):
        dataclasses.replace(d, y=d.y.astype(float))
    with pytest.raises(ValueError, match="n_respondents"):
        SurveyConfig(n_respondents=2)
    assert isinstance(d.subset(np.arange(5)), SurveyData)


# ----------------------------------------------------------------------------- factor analysis
def test_factor_analysis_recovers_a_factor_covariance():
    rng = np.random.default_rng(0)
    lam = rng.normal(size=(12, 2))
    psi = rng.uniform(0.2, 0.5, 12)
    x = rng.normal(size=(20_000, 2)) @ lam.T + rng.normal(size=(20_000, 12)) * np.sqrt(psi)
    fa = fit_factor_analysis(x, 2)
    cov = np.cov(((x - fa.mean) / fa.scale).T)
    assert np.abs(fa.covariance - cov).max() < 0.03
    best, scores = choose_n_factors(x[:15_000], x[15_000:], (1, 2, 4))
    assert best >= 2 and scores[2] > scores[1]


def test_factor_conditional_is_the_gaussian_conditional():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3000, 2)) @ rng.normal(size=(2, 6)) + rng.normal(size=(3000, 6))
    fa = fit_factor_analysis(x, 2)
    mean, sd = fa.conditional(x[:5], [1, 4])
    cov = fa.covariance * np.outer(fa.scale, fa.scale)
    o, h = [0, 2, 3, 5], [1, 4]
    gain = cov[np.ix_(h, o)] @ np.linalg.inv(cov[np.ix_(o, o)])
    expect = fa.mean[h] + (x[:5][:, o] - fa.mean[o]) @ gain.T
    assert np.allclose(mean, expect)
    assert np.allclose(sd**2, np.diag(cov[np.ix_(h, h)] - gain @ cov[np.ix_(o, h)]))


def test_discretised_log_prob_is_a_distribution():
    y = np.arange(7)
    for m, s in [(3.0, 1.0), (-2.0, 0.5), (30.0, 0.1)]:
        p = np.exp(discretised_log_prob(y, np.full(7, m), np.full(7, s), 7))
        assert np.isclose(p.sum(), 1.0)
    assert np.isfinite(discretised_log_prob(np.array([0]), np.array([50.0]), np.array([0.1]), 7)).all()


def test_procrustes_undoes_a_rotation():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(500, 3))
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rotated = x @ q
    assert np.allclose((rotated - rotated.mean(0)) @ tw.procrustes(rotated, x), x - x.mean(0), atol=1e-8)


# ----------------------------------------------------------------------------- model
def test_ordinal_log_prob_matches_numpy_and_normalises():
    cuts = np.array([-1.0, 0.5, 2.0])
    padded = torch.tensor([[-1e4, -1.0, 0.5, 2.0, 1e4, 1e4]])  # one item, 4 categories, padded to 5
    u = torch.tensor([[0.3]])
    logs = torch.stack([ordinal_log_prob(u, padded, torch.tensor([[c]])) for c in range(4)]).squeeze()
    assert np.allclose(logs.exp().numpy(), ordinal_probs(np.array(0.3), cuts), atol=1e-6)


def test_config_and_usage_errors(world):
    with pytest.raises(ValueError, match="encoder"):
        TwinConfig(encoder="mean-field")
    with pytest.raises(ValueError, match="local_covariance"):
        TwinConfig(local_covariance="banded")
    with pytest.raises(RuntimeError, match="fit the model first"):
        TwinModel().posterior(world.data)
    with pytest.raises(ValueError, match="profile"):
        tw.TwinSettings.for_profile("huge")
    train, test = tw.split_respondents(100, 0.25, 0)
    assert len(np.intersect1d(train, test)) == 0 and len(train) + len(test) == 100


def test_fit_recovers_latents_and_effects(world, fitted):
    """A small fit must already recover perceptions and the direction and size of lever effects."""
    model, train, test = fitted
    assert np.all(np.isfinite(model.history)) and model.history[-1] < model.history[0]
    post = model.posterior(world.data.subset(test), 100)
    rec = tw.latent_recovery(post, world, test)
    assert rec["after rotation"].min() > 0.85
    assert (rec["after rotation"] - rec["raw"]).abs().max() < 0.02  # rotation and sign fixed by design
    eff = tw.effect_table(model, world, test, post)
    assert eff["rel_error"].abs().median() < 0.3
    assert np.all(eff["mean"] > 0)


def test_counterfactual_of_no_action_is_zero_and_inputs_are_checked(world, fitted):
    model, _, test = fitted
    d = world.data.subset(test)
    assert np.allclose(model.counterfactual(d, 0, np.zeros(3), n_draws=20), 0.0)
    with pytest.raises(ValueError, match="one entry per lever"):
        model.counterfactual(d, 0, [1.0, 0.0])
    with pytest.raises(ValueError, match="brand"):
        model.counterfactual(d, 9, np.zeros(3))
    other = simulate_survey(SurveyConfig(n_respondents=50, brands=("A", "B", "C")), seed=0)
    with pytest.raises(ValueError, match="differ from those the model was fitted on"):
        model.posterior(other.data)


def test_predictions_beat_the_marginal_and_the_search_spends_the_budget(world, fitted):
    model, train, test = fitted
    table, info = tw.predictive_scores(model, world, train, test, candidates=(3, 6), n_draws=50)
    assert (table["twin log-lik"] > table["marginal log-lik"]).all()
    assert info["n_factors"] in (3.0, 6.0)
    frame = lever_search(model, world.data.subset(test), 0, world.cost, budget=1.0, step=0.25, n_draws=20)
    spent = frame[[c for c in frame.columns if c.startswith("delta_")]].to_numpy() @ world.cost
    assert np.allclose(spent, 1.0) and len(frame) == 15
    assert np.isclose(frame["p_best"].sum(), 1.0)
    assert (frame["lo"] <= frame["mean"]).all() and (frame["mean"] <= frame["hi"]).all()


def test_elbo_and_importance_weighted_objectives_both_run(world):
    """particles = 1 is the plain ELBO (a local sample site); k > 1 resamples k proposals per respondent."""
    setup(0)
    d = world.data.subset(np.arange(300))
    for k in (1, 3):
        m = TwinModel(TwinConfig(batch_size=100, epochs=2, predictive_epochs=1, particles=k)).fit(d)
        post = m.posterior(d.subset(np.arange(20)), n_draws=7, chunk=3)
        assert post["theta"].shape == (7, 20, 5, 3) and torch.isfinite(post["u"]).all()
        assert np.all(np.isfinite(m.history)) and len(m.predictive_history) == 1
    with pytest.raises(ValueError, match="particles"):
        TwinConfig(particles=0)


def test_two_models_keep_their_own_parameters(world):
    """Fitting a second model must not change what the first one says (separate parameter stores)."""
    setup(0)
    d = world.data.subset(np.arange(300))
    a = TwinModel(TwinConfig(batch_size=100, epochs=2, predictive_epochs=0)).fit(d)
    torch.manual_seed(5)
    before = a.global_draws(5)["lever_w"]
    TwinModel(TwinConfig(batch_size=100, epochs=2, predictive_epochs=0, encoder="batch_position")).fit(d)
    torch.manual_seed(5)
    after = a.global_draws(5)["lever_w"]
    assert torch.equal(before, after)


def test_bootstrap_correction_subtracts_the_refits_error_draw_by_draw(world):
    """Corrected draws are raw - bootstrap + simulated truth; the pieces come from the posterior."""
    setup(0)
    d, q = world.data.subset(np.arange(300)), world.data.subset(np.arange(300, 340))
    model = TwinModel(TwinConfig(batch_size=100, epochs=2, predictive_epochs=1, bootstrap=True)).fit(d)
    boot = model.bootstrap_model
    assert boot is not None and boot.bootstrap_model is None and boot.predictive_history == []
    assert model.fit_seconds > boot.fit_seconds > 0
    post = model.posterior(q, n_draws=6, chunk=3)
    assert post["bootstrap.theta"].shape == (6, 40, 5, 3) and post["simulated.theta"].shape == (1, 40, 5, 3)
    delta = np.array([1.0, 0.0, 0.5])
    raw = model.counterfactual(q, 2, delta, post=post, corrected=False)
    fixed = model.counterfactual(q, 2, delta, post=post)
    pick = {k: post[f"bootstrap.{k}"] for k in ("theta", "lever_w", "loadings", "cuts")}
    err = boot.counterfactual(q, 2, delta, post=pick) - model.counterfactual(
        q, 2, delta, post={k: post[f"simulated.{k}"] for k in pick}, corrected=False)
    assert not np.allclose(fixed, raw) and np.allclose(fixed, raw - err)
    assert np.allclose(model.counterfactual(q, 2, np.zeros(3), post=post), 0.0)
    hidden = model.posterior(q, n_draws=4, hide_outcomes=True)
    assert not any(k.startswith("bootstrap.") for k in hidden)
    with pytest.raises(ValueError, match="no bootstrap draws"):
        model.counterfactual(q, 2, delta, post=hidden)
    again = model.posterior(q, n_draws=6, chunk=3)  # the simulated copy is fixed by the model's seeds
    assert torch.equal(again["simulated.theta"], post["simulated.theta"])

def test_basis_error_separates_a_flexible_basis_from_a_straight_line(world, fitted):
    """Knots let the basis follow the saturating and threshold levers; a straight line cannot."""
    model, train, test = fitted
    flexible = tw.basis_error(model, world, train, test)
    assert flexible["rel_error"].abs().max() < 0.03
    setup(0)
    line = TwinModel(TwinConfig(n_knots=0, batch_size=100, epochs=1, predictive_epochs=0))
    line.fit(world.data.subset(train[:200]))
    straight = tw.basis_error(line, world, train, test).groupby("lever", sort=False)["rel_error"]
    worst = straight.apply(lambda e: e.abs().max())
    assert worst["price advantage"] < 1e-6  # the true price response is linear
    assert worst["ad awareness"] > 0.05 and worst["network quality"] > 0.05


def test_iterate_average_writes_back_the_mean_of_the_tail():
    """Steps 1-5 set the parameter to 1..5; averaging from step 3 on leaves their mean, 4."""
    with pyro.get_param_store().scope():
        pyro.param("w", torch.zeros(2))
        value = dict(pyro.get_param_store().named_parameters())["w"]
        avg = _IterateAverage(start=2)
        for v in range(1, 6):
            with torch.no_grad():
                value.fill_(float(v))
            avg.update()
        avg.apply()
        assert torch.allclose(pyro.param("w"), torch.full((2,), 4.0))
    with pytest.raises(ValueError, match="average_tail"):
        TwinConfig(average_tail=1.0)


def test_simulate_draws_answers_from_the_fitted_model(world, fitted):
    """Simulated answers are valid categories whose means follow the returned latents and globals."""
    model, _, _ = fitted
    star, truth = model.simulate(world.data, seed=4)
    assert star.y.shape == world.data.y.shape and np.array_equal(star.levers, world.data.levers)
    assert np.all(star.y >= 0) and np.all(star.y < np.asarray(star.n_categories))
    u = torch.einsum("nkl,jl->nkj", truth["theta"][0], truth["loadings"][0])
    for j in (0, 12, 14):
        n_cat = star.n_categories[j]
        cdf = torch.sigmoid(truth["cuts"][0, j, 1:n_cat] - u[..., j, None])  # P(y <= c), c < n_cat - 1
        expect = float((n_cat - 1 - cdf.sum(-1)).mean())
        se = star.y[..., j].std() / np.sqrt(star.y[..., j].size)
        assert abs(star.y[..., j].mean() - expect) < 4 * se
    again, _ = model.simulate(world.data, seed=4)
    assert np.array_equal(again.y, star.y)


def test_the_survey_sweep_does_not_depend_on_workers_or_on_what_ran_before():
    settings = tw.TwinSettings(n_respondents=300, fit=TwinConfig(batch_size=100, epochs=2, predictive_epochs=1,
                                                                 bootstrap=True), n_draws=20)
    one = tw.effects_over_seeds(settings, [3, 4], workers=1)
    torch.manual_seed(123)  # the global stream a sweep used to draw from
    two = tw.effects_over_seeds(settings, [3, 4], workers=2)
    pd.testing.assert_frame_equal(one, two)
    assert set(one["seed"]) == {3, 4} and one["rel_error"].notna().all()
