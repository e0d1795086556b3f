"""Chapter 3's stack: the geo-graph world, NOTEARS and its scores, the panel split, the DeepCausal model."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from mmmlib.deepcausal.graph import (
    acyclicity,
    edge_scores,
    notears,
    shd,
    spend_deviations,
    total_effects,
)
from mmmlib.deepcausal.model import DeepCausalConfig, fit_deepcausal
from mmmlib.deepcausal.panel import (
    naive_forecasts,
    pooled_r2,
    saturated_media,
    split_panel,
    within_r2,
)
from mmmlib.deepcausal.world import (
    GeoGraphConfig,
    is_acyclic,
    simulate_geo_graph,
)

SMALL = GeoGraphConfig(n_regions=12, n_weeks=60)


# ---------------------------------------------------------------- world
def test_world_is_reproducible_and_consistent():
    a = simulate_geo_graph(SMALL, seed=3)
    b = simulate_geo_graph(SMALL, seed=3)
    np.testing.assert_array_equal(a.sales, b.sales)
    assert a.media.shape == (12, 60, len(SMALL.channels))
    assert np.all(a.media > 0)
    t = a.truth
    # expected sales = size * (baseline + season + controls + media): media part recomputed from the truth
    rel = a.media / t.mean_spend[:, None, :]
    media = t.beta * saturated_media(rel, t.decay, t.half, t.slope).numpy()
    np.testing.assert_allclose(t.contributions, t.size[:, None, None] * media)
    rest = t.size[:, None] * (t.baseline[:, None] + t.season[None] + a.controls @ t.gamma)
    np.testing.assert_allclose(t.expected, rest + t.contributions.sum(axis=2))


def test_world_rejects_cycles_and_unknown_channels():
    with pytest.raises(ValueError, match="DAG"):
        GeoGraphConfig(edges=(("tv", "search", 0.5), ("search", "tv", 0.5)))
    with pytest.raises(ValueError, match="unknown channel 'radioo'"):
        GeoGraphConfig(edges=(("radioo", "search", 0.5),))
    with pytest.raises(ValueError, match="self-loops"):
        GeoGraphConfig(edges=(("tv", "tv", 0.5),))


def test_is_acyclic():
    assert is_acyclic(np.triu(np.ones((4, 4)), 1))
    cyc = np.zeros((3, 3))
    cyc[0, 1] = cyc[1, 2] = cyc[2, 0] = 1
    assert not is_acyclic(cyc)


def test_child_spend_follows_parent_a_week_later():
    w = simulate_geo_graph(GeoGraphConfig(n_regions=40, n_weeks=100), seed=0)
    z = spend_deviations(w.media)
    tv, search = w.channels.index("tv"), w.channels.index("search")
    lead = np.corrcoef(z[:, :-1, tv].ravel(), z[:, 1:, search].ravel())[0, 1]
    lag = np.corrcoef(z[:, 1:, tv].ravel(), z[:, :-1, search].ravel())[0, 1]
    assert lead > lag + 0.2


# ---------------------------------------------------------------- graph
def test_acyclicity_is_zero_on_dags_and_gradient_matches():
    dag = np.triu(np.random.default_rng(0).normal(size=(5, 5)), 1)
    assert acyclicity(dag)[0] == pytest.approx(0.0, abs=1e-10)
    w = np.random.default_rng(1).normal(scale=0.5, size=(4, 4))
    h, g = acyclicity(w)
    assert h > 0
    eps = 1e-6
    num = np.zeros_like(w)
    for i in range(4):
        for j in range(4):
            d = np.zeros_like(w)
            d[i, j] = eps
            num[i, j] = (acyclicity(w + d)[0] - acyclicity(w - d)[0]) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8)


def test_shd_and_scores():
    truth = np.zeros((3, 3))
    truth[0, 1] = truth[1, 2] = 1
    assert shd(truth, truth) == 0
    rev = np.zeros((3, 3))
    rev[1, 0] = rev[1, 2] = 1
    assert shd(rev, truth) == 1  # one reversal
    extra = truth.copy()
    extra[0, 2] = 1
    assert shd(extra, truth) == 1
    s = edge_scores(rev, truth)
    assert (s["precision"], s["recall"]) == (0.5, 0.5)
    assert edge_scores(np.zeros((3, 3)), truth)["f1"] == 0.0


def test_lag_one_notears_recovers_the_graph_and_is_acyclic():
    w = simulate_geo_graph(GeoGraphConfig(n_regions=20, n_weeks=80), seed=1)
    g = notears(spend_deviations(w.media), w.channels, lag=1)
    assert g.h < 1e-6  # the constraint holds on the raw weights (up to tolerance)
    assert is_acyclic(g.weights)
    assert edge_scores(g.weights, w.truth.adjacency)["shd"] <= 1
    assert set(g.edges()["parent"]) <= set(w.channels)


def test_same_week_notears_cannot_orient_lagged_edges():
    w = simulate_geo_graph(GeoGraphConfig(n_regions=20, n_weeks=80), seed=1)
    g = notears(spend_deviations(w.media), w.channels, lag=0)
    assert edge_scores(g.weights, w.truth.adjacency)["f1"] < 0.6


def test_notears_validates_input():
    with pytest.raises(ValueError, match="lag must be 0 or 1"):
        notears(np.zeros((2, 10, 3)), ["a", "b", "c"], lag=2)
    with pytest.raises(ValueError, match="2 channel names for 3"):
        notears(np.zeros((2, 10, 3)), ["a", "b"])
    bad = np.ones((2, 5, 2))
    bad[1, 3, 0] = 0
    with pytest.raises(ValueError, match="region 1, week 3, channel 0"):
        spend_deviations(bad)


def test_total_effects_add_paths():
    w = np.zeros((3, 3))
    w[0, 1], w[1, 2], w[0, 2] = 0.5, 0.4, 0.2
    te = total_effects(w, np.zeros(3))
    assert te[0, 2] == pytest.approx(0.2 + 0.5 * 0.4)
    assert te[2, 0] == 0


# ---------------------------------------------------------------- panel
def test_split_uses_training_weeks_only():
    w = simulate_geo_graph(SMALL, seed=0)
    a = split_panel(w.media, w.controls, w.sales, 10)
    sales = w.sales.copy()
    sales[:, -10:] *= 5.0  # a changed holdout must not change the scaling
    media = w.media.copy()
    media[:, -10:] *= 3.0
    b = split_panel(media, w.controls, sales, 10)
    np.testing.assert_array_equal(a.mean_sales, b.mean_sales)
    np.testing.assert_array_equal(a.mean_spend, b.mean_spend)
    np.testing.assert_allclose(a.sales[:, a.train].mean(axis=1), 1.0)


def test_split_names_bad_cells():
    w = simulate_geo_graph(SMALL, seed=0)
    sales = w.sales.copy()
    sales[4, 7] = np.nan
    with pytest.raises(ValueError, match=r"sales has a non-finite value at index \(4, 7\)"):
        split_panel(w.media, w.controls, sales, 10)
    media = w.media.copy()
    media[2, 5, 1] = -1.0
    with pytest.raises(ValueError, match=r"media must be non-negative.*\(2, 5, 1\)"):
        split_panel(media, w.controls, w.sales, 10)
    with pytest.raises(ValueError, match="holdout_weeks"):
        split_panel(w.media, w.controls, w.sales, 50)


def test_within_r2_ignores_region_levels():
    rng = np.random.default_rng(0)
    level = np.array([[1.0], [100.0]])
    obs = level + rng.normal(size=(2, 30))
    const = np.repeat(obs.mean(axis=1, keepdims=True), 30, axis=1)
    assert pooled_r2(const, obs) > 0.99
    assert within_r2(const, obs) == pytest.approx(0.0, abs=1e-12)
    forecasts = naive_forecasts(obs, 20)
    assert forecasts["region mean"].shape == (2, 10)


# ---------------------------------------------------------------- model
def test_saturated_media_matches_the_recursion_per_region():
    x = np.random.default_rng(0).gamma(2.0, size=(3, 25, 4))
    decay = np.array([0.0, 0.3, 0.6, 0.85])
    half, slope = np.array([0.5, 1.0, 1.5, 2.0]), np.array([1.0, 2.0, 0.7, 3.0])
    a = np.empty_like(x)
    a[:, 0] = x[:, 0]
    for t in range(1, 25):
        a[:, t] = x[:, t] + decay * a[:, t - 1]
    a *= 1 - decay
    expected = a**slope / (a**slope + half**slope)
    np.testing.assert_allclose(saturated_media(x, decay, half, slope).numpy(), expected, rtol=1e-10)
    with pytest.raises(ValueError, match="regions, weeks, channels"):
        saturated_media(x[0], decay, half, slope)


@pytest.mark.parametrize("variant", [{}, {"coefficients": "static"}, {"gru_inputs": "media", "mixing": "deepcausal"}])
def test_fit_contributions_add_up_and_beat_a_constant(variant):
    torch.manual_seed(0)
    w = simulate_geo_graph(SMALL, seed=0)
    split = split_panel(w.media, w.controls, w.sales, 8)
    cfg = replace(DeepCausalConfig(hidden=16, epochs=120), **variant)
    fit = fit_deepcausal(split, w.channels, cfg, progress=False)
    assert fit.additivity_gap() < 1e-10
    assert fit.losses[-1] < fit.losses[0]
    beta = fit.beta
    assert np.all(beta > 0) and np.all(beta < cfg.bound)
    tr = split.train
    assert within_r2(fit.prediction[:, tr], w.sales[:, tr]) > 0.3
    curve = fit.response(np.ones(len(w.channels)))
    assert curve.shape == (len(w.channels),) and np.all(curve > 0)


def test_fit_never_reads_the_holdout_sales():
    w = simulate_geo_graph(SMALL, seed=0)
    split = split_panel(w.media, w.controls, w.sales, 8)
    sales = w.sales.copy()
    sales[:, -8:] = 1.0  # garbage holdout
    split_bad = split_panel(w.media, w.controls, sales, 8)
    cfg = DeepCausalConfig(hidden=8, epochs=20)
    torch.manual_seed(0)
    a = fit_deepcausal(split, w.channels, cfg, progress=False)
    torch.manual_seed(0)
    b = fit_deepcausal(split_bad, w.channels, cfg, progress=False)
    np.testing.assert_array_equal(a.prediction, b.prediction)


def test_config_validation_names_the_field():
    with pytest.raises(ValueError, match="coefficients"):
        DeepCausalConfig(coefficients="dynamic")
    with pytest.raises(ValueError, match="max_decay"):
        DeepCausalConfig(max_decay=1.0)


def test_figures_are_read_at_the_page_width():
    """Multi-panel figures wrap at two or three panels a row: a row of eight panels shrunk to the
    text column has unreadable labels."""
    from types import SimpleNamespace

    import matplotlib.pyplot as plt

    from mmmlib.deepcausal.experiment import plot_beta_paths, plot_graphs, plot_holdout

    w = simulate_geo_graph(SMALL, seed=3)
    T = w.sales.shape[1]
    figs = [
        plot_holdout(w, {"model": w.sales * 1.01}, train_weeks=T - 4),
        plot_graphs(w.truth.adjacency, {"a": w.truth.adjacency, "b": w.truth.adjacency * 0.5}, w.channels),
        plot_beta_paths(SimpleNamespace(beta=w.truth.beta, split=SimpleNamespace(train_weeks=T - 4)), w),
    ]
    for fig in figs:
        assert fig.get_figwidth() <= 9.5
        plt.close(fig)
