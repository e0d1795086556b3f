"""mmmlib.funnel.model and mmmlib.funnel.world: the funnel's laws, the scan, the source's failure, recovery."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from mmmlib.funnel.model import (
    CHANNELS,
    FunnelMask,
    UACModel,
    affine_scan,
    attribution,
    funnel,
    media_pressure,
)
from mmmlib.funnel.world import UACWorldConfig, simulate_source_dgp, simulate_uac_world, true_params


def _loop(a, b, x0):
    out, x = [], x0
    for t in range(a.shape[-1]):
        x = a[..., t] * x + b[..., t]
        out.append(x)
    return torch.stack(out, dim=-1)


@pytest.mark.parametrize("T", [1, 2, 7, 64, 129])
def test_affine_scan_is_the_recurrence(T):
    g = torch.Generator().manual_seed(T)
    a = torch.rand((3, T), generator=g, dtype=torch.float64)
    b = torch.randn((3, T), generator=g, dtype=torch.float64)
    x0 = torch.randn(3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(affine_scan(a, b, x0), _loop(a, b, x0), rtol=1e-12, atol=1e-12)


def _world(**kw):
    return simulate_uac_world(UACWorldConfig(n_days=120, **kw), seed=5)


def test_funnel_conserves_each_segment_and_never_goes_negative():
    w = _world()
    p = w.truth.torch()
    x = torch.as_tensor(w.spend.to_numpy() / w.spend.to_numpy().mean(axis=0))
    pressure = media_pressure(x, p["hill_k"], p["hill_slope"], p["spillover"], p["spill_decay"])
    conv, active = funnel(p, pressure, torch.as_tensor(w.sizes), FunnelMask(), 0.15)
    assert (active > 0).all() and (active < torch.as_tensor(w.sizes)[:, None]).all()
    previous = torch.cat([0.15 * torch.as_tensor(w.sizes)[:, None], active[:, :-1]], dim=1)
    assert (conv >= 0).all() and (conv <= previous).all()  # conversions come out of the activated stock
    # with the loop: U = M - A, flows as documented
    lam = p["forget"][:, None]
    m_ua, m_ac = FunnelMask().tensors()
    p_ua = torch.sigmoid(p["alpha_ua"][:, None] + (p["beta_ua"] * m_ua) @ pressure.T)
    p_ac = torch.sigmoid(p["alpha_ac"][:, None] + (p["beta_ac"] * m_ac) @ pressure.T)
    A = 0.15 * torch.as_tensor(w.sizes)
    for t in range(pressure.shape[0]):
        U = torch.as_tensor(w.sizes) - A
        C = (1 - lam[:, 0]) * p_ac[:, t] * A
        A = A + U * p_ua[:, t] - lam[:, 0] * A - C
        torch.testing.assert_close(active[:, t], A, rtol=1e-10, atol=1e-8)
        torch.testing.assert_close(conv[:, t], C, rtol=1e-10, atol=1e-8)


def test_mask_silences_forbidden_links_and_attribution_follows():
    w = _world()
    p = w.truth.torch()
    p["beta_ua"] = p["beta_ua"].clone()
    p["beta_ua"][:, CHANNELS.index("brand_search")] = 50.0  # forbidden by the default mask: no effect
    x = torch.as_tensor(w.spend.to_numpy() / w.spend.to_numpy().mean(axis=0))
    sizes = torch.as_tensor(w.sizes)
    share = attribution(p, x, sizes) / attribution(p, x, sizes).sum()
    np.testing.assert_allclose(share.numpy(), w.true_share.to_numpy(), rtol=1e-10)
    # without spillover and with no brand-search effect at all, brand search gets nothing
    p["spillover"] = torch.tensor(0.0, dtype=torch.float64)
    p["beta_ac"] = p["beta_ac"].clone()
    p["beta_ac"][:, CHANNELS.index("brand_search")] = 0.0
    assert abs(float(attribution(p, x, sizes)[CHANNELS.index("brand_search")])) < 1e-8


def test_world_is_reproducible_and_validates():
    a, b = _world(), _world()
    np.testing.assert_array_equal(a.conversions.to_numpy(), b.conversions.to_numpy())
    assert a.conversions.shape == (120, 3) and (a.conversions.to_numpy() >= 0).all()
    with pytest.raises(ValueError, match="extra link"):
        UACWorldConfig(extra_links=(("radio", "ac", 1.0),))
    params, mask = true_params(UACWorldConfig(extra_links=(("tv", "ac", 0.8),)))
    assert mask.ac[0] == 1 and np.allclose(params.beta_ac[:, 0], 0.8)


def test_source_generator_reproduces_the_spec_and_its_failure():
    """Spec §1.2, seed 42: y_0..4 and the summed activation probability above 1."""
    src = simulate_source_dgp(seed=42)
    np.testing.assert_allclose(src.sales[:5], [1048, 16179, 336016, 50, 122671], atol=0.5)
    assert src.p_ua_total[:, 1:].max() > 2.5  # "probabilities" that sum to about 2.7
    assert src.conversions[:, 1:].sum() > 6 * 100_000  # more conversions than people
    assert src.sales[30:].mean() == pytest.approx(50, abs=1.0)  # from day 30 on: 50 plus noise


def test_fit_recovers_a_short_world():
    w = simulate_uac_world(UACWorldConfig(n_days=365), seed=11)
    fit = UACModel().fit(w.spend.to_numpy(), w.conversions.to_numpy(), w.sizes, laplace_draws=100)
    assert fit.converged
    np.testing.assert_allclose(fit.attribution_share["estimate"], w.true_share, atol=0.03)
    np.testing.assert_allclose(fit.params.alpha_ua, w.truth.alpha_ua, rtol=0.1)
    lo, hi = fit.interval("beta_ua")
    assert (lo <= fit.params.beta_ua + 1e-12).all() and (fit.params.beta_ua <= hi + 1e-12).all()


def test_bad_input_is_named():
    w = _world()
    spend = w.spend.to_numpy().copy()
    spend[7, 2] = -1.0
    with pytest.raises(ValueError, match="row 7, channel 2"):
        UACModel().fit(spend, w.conversions.to_numpy(), w.sizes)
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        UACModel().fit(w.spend.to_numpy(), w.conversions.to_numpy()[:, :2], w.sizes)
    with pytest.raises(ValueError, match="observe"):
        UACModel(observe="weekly")
    with pytest.raises(ValueError, match="attributes"):
        UACModel(param_net=True).fit(w.spend.to_numpy(), w.conversions.to_numpy(), w.sizes)


def test_recovery_rows_and_summary_are_consistent():
    from mmmlib.funnel.experiment import FitSettings, run_recovery, summarise

    cfg = UACWorldConfig(n_days=90)
    params, attribution_rows, fits = run_recovery(FitSettings(laplace_draws=50), [0, 1], cfg)
    assert len(fits) == 2 and set(params["seed"]) == {0, 1}
    # 3 segments x (3 scalars + 6 effects) + spillover, per seed
    assert len(params) == 2 * (3 * 9 + 1)
    summary = summarise(params, attribution_rows).loc["masked, per segment"]
    beta = params[params["group"] == "beta"]
    assert summary["media effects β: median |rel. error|"] == pytest.approx(beta["rel_error"].abs().median())
    assert summary["attribution: max |error| (pp)"] == pytest.approx(attribution_rows["error_pp"].abs().max())
    np.testing.assert_allclose(attribution_rows.groupby("seed")["estimate"].sum(), 1.0)


def test_recovery_does_not_depend_on_the_number_of_workers():
    from mmmlib.funnel.experiment import FitSettings, run_recovery

    cfg = UACWorldConfig(n_days=730)  # the chapter's size: large enough for two threads to change the last digits
    one = run_recovery(FitSettings(laplace_draws=20), [3, 4], cfg, workers=1)
    two = run_recovery(FitSettings(laplace_draws=20), [3, 4], cfg, workers=2)
    for a, b in zip(one[:2], two[:2], strict=True):
        pd.testing.assert_frame_equal(a, b)
    timing = ["seconds", "laplace_seconds"]
    pd.testing.assert_frame_equal(one[2].drop(columns=timing), two[2].drop(columns=timing))


def test_effects_absent_in_truth_are_reported_apart_not_scored():
    """An unmasked model's effects that are zero in truth: no relative error and no coverage
    (a positive effect's interval cannot hold 0), group 'absent'; the others keep their scores."""
    from mmmlib.funnel.experiment import FitSettings, run_recovery, summarise
    from mmmlib.funnel.model import FunnelMask

    params, attribution_rows, _ = run_recovery(FitSettings("no mask", mask=FunnelMask.full(), laplace_draws=50), [0],
                                               UACWorldConfig(n_days=90), workers=1)
    absent = params[params["group"] == "absent"]
    assert len(absent) == 3 * 2 and (absent["true"] == 0).all()  # TV on conversion, brand search on activation
    assert absent["covered"].isna().all() and absent["rel_error"].isna().all()
    beta = params[params["group"] == "beta"]
    assert (beta["true"] > 0).all() and beta["covered"].notna().all()
    summary = summarise(params, attribution_rows).loc["no mask"]
    assert summary["media effects β: coverage"] == pytest.approx(beta["covered"].mean())


def test_the_outside_world_departs_from_the_home_field_as_configured():
    from mmmlib.funnel.outside import OutsideConfig, simulate_outside_world

    home = UACWorldConfig(n_days=120)
    flat = OutsideConfig(home=home, subgroups=1, within_sd=0.0, lag_days=0, hill_k=home.hill_k,
                         hill_slope=home.hill_slope, initial_active=home.initial_active)
    # with every departure switched off it is the home-field funnel: the same expected conversions
    # and attribution as the model's own world on the same spend
    w = simulate_outside_world(flat, seed=2)
    again = simulate_outside_world(flat, seed=2)
    pd.testing.assert_frame_equal(w.conversions, again.conversions)
    p = w.truth.torch()
    x = torch.as_tensor(w.spend.to_numpy() / w.spend.to_numpy().mean(axis=0))
    with torch.no_grad():
        conv, _ = funnel(p, media_pressure(x, p["hill_k"], p["hill_slope"], p["spillover"], p["spill_decay"]),
                         torch.as_tensor(w.sizes), w.true_mask, home.initial_active)
    np.testing.assert_allclose(w.mean, conv.numpy() + w.truth.base[:, None], rtol=1e-10)
    # the departures change what the market does, and the truth reports the segments' mean effects
    out = simulate_outside_world(OutsideConfig(home=home, within_sd=0.6, lag_days=5), seed=2)
    assert out.config == home  # what the model assumes
    assert not np.allclose(out.mean, w.mean)
    assert float(out.true_share.sum()) == pytest.approx(1.0)
    assert (out.truth.beta_ua[:, 3] == 0).all() and (out.truth.beta_ua[:, :3] > 0).all()
    for bad, match in ((dict(subgroups=0), "subgroups"), (dict(lag_days=100), "lag_days"),
                       (dict(initial_active=1.0), "initial_active"), (dict(within_sd=-1.0), "within_sd")):
        with pytest.raises(ValueError, match=match):
            OutsideConfig(home=home, **bad)


def test_recovery_runs_on_the_outside_world():
    from mmmlib.funnel.experiment import FitSettings, run_recovery
    from mmmlib.funnel.outside import OutsideConfig

    params, attribution_rows, fits = run_recovery(FitSettings(laplace_draws=20), [0], OutsideConfig(
        home=UACWorldConfig(n_days=120)), workers=1)
    assert len(fits) == 1 and (fits["n_days"] == 120).all()
    assert attribution_rows["true"].sum() == pytest.approx(1.0)


def test_paramnet_with_the_free_fits_optimiser_reaches_its_optimum():
    """ParamNet fitted by L-BFGS from the free fit's start reaches the free fit's likelihood on the
    total (it only reparameterises three segments); the source's Adam stops far above it."""
    from mmmlib.funnel.experiment import FitSettings, run_recovery

    cfg = UACWorldConfig(n_days=240)
    free = run_recovery(FitSettings("free", observe="total", laplace_draws=0), [1], cfg, workers=1)[2]
    net = run_recovery(FitSettings("net", observe="total", param_net=True, param_net_optimizer="lbfgs"), [1], cfg,
                       workers=1)[2]
    adam = run_recovery(FitSettings("adam", observe="total", param_net=True, max_iter=200), [1], cfg, workers=1)[2]
    assert net["nll"].iloc[0] == pytest.approx(free["nll"].iloc[0], abs=0.5)
    assert adam["nll"].iloc[0] > free["nll"].iloc[0] + 5.0
    with pytest.raises(ValueError, match="param_net_optimizer"):
        UACModel(param_net=True, param_net_optimizer="sgd")
