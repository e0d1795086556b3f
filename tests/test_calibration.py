"""mmmlib.bayes.calibration: simulation-based calibration's pieces do what they claim.

The study itself (100 prior draws, NUTS and VI) is Chapter 7; here the uniformity test is checked on
ranks whose answer is known, prior simulation against the Pyro program's sites, and a tiny study
for the shape of its output.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import logit

from mmmlib.bayes.calibration import (
    SBCResult,
    SBCSettings,
    run_sbc,
    simulate_from_prior,
    uniformity,
)
from mmmlib.bayes.model import BayesianMMM
from mmmlib.worlds import easy_world


def _result(ranks: np.ndarray, settings: SBCSettings) -> SBCResult:
    rows = [dict(replication=r, inference="NUTS", parameter=f"roi[c{j}]", rank=int(ranks[r, j]))
            for r in range(ranks.shape[0]) for j in range(ranks.shape[1])]
    return SBCResult(settings, pd.DataFrame(rows), pd.DataFrame())


def test_uniform_ranks_pass_and_piled_ranks_fail():
    s = SBCSettings(replications=400, ranks_of=99, bins=10)
    rng = np.random.default_rng(0)
    uniform = uniformity(_result(rng.integers(0, 100, size=(400, 4)), s))
    assert not uniform["rejected"].any()
    assert uniform["coverage_90"].between(0.85, 0.95).all()
    # too narrow a posterior: the truth falls outside it at both ends
    narrow = rng.choice(np.r_[0:5, 95:100], size=(400, 4))
    piled = uniformity(_result(narrow, s))
    assert piled["rejected"].all() and (piled["coverage_90"] < 0.5).all()


@pytest.mark.parametrize("prior", ["roi", "cost"])
def test_prior_simulation_runs_the_pyro_program(prior):
    w = easy_world(0, n_weeks=30)
    mmm = BayesianMMM("hill_adstock", media_prior=prior)
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        mmm._scales(w.data)
        truth, y = simulate_from_prior(mmm, w.data, seed=3)
        again, y2 = simulate_from_prior(mmm, w.data, seed=3)
    finally:
        torch.set_default_dtype(old)
    np.testing.assert_array_equal(y, y2)
    assert y.shape == (30,) and np.isfinite(y).all()
    assert truth["roi"].shape == (4,) and (truth["roi"] > 0).all()
    assert {"lag_weight", "half_max_effective_concentration", "slope", "sigma", "intercept"} <= set(truth)
    np.testing.assert_array_equal(truth["roi"], again["roi"])


def test_a_tiny_study_ranks_every_parameter_for_both_methods():
    s = SBCSettings(replications=2, num_warmup=30, num_samples=30, svi_steps=50, ranks_of=49, bins=5)
    res = run_sbc(s, easy_world(1, n_weeks=20).data, seed=0)
    assert len(res.ranks) == 2 * 2 * 16 and res.ranks["rank"].between(0, 49).all()
    assert set(res.ranks["inference"]) == {"NUTS", "VI"} and len(res.fits) == 4
    table = uniformity(res)
    assert len(table) == 32 and table["p_value"].between(0, 1).all()


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="bins"):
        SBCSettings(ranks_of=99, bins=7)
    with pytest.raises(ValueError, match="replications"):
        SBCSettings(replications=0)
    with pytest.raises(ValueError, match="ranks_of"):
        SBCSettings(num_samples=10, chains=2, ranks_of=99)


def test_ranks_do_not_depend_on_the_number_of_workers():
    s = SBCSettings(replications=3, num_warmup=40, num_samples=40, svi_steps=60, ranks_of=49, bins=5)
    data = easy_world(2, n_weeks=20).data
    one, two = run_sbc(s, data, seed=4, workers=1), run_sbc(s, data, seed=4, workers=2)
    pd.testing.assert_frame_equal(one.ranks, two.ranks)
    pd.testing.assert_frame_equal(one.fits.drop(columns="seconds"), two.fits.drop(columns="seconds"))


def test_uniformity_by_convergence_class_tests_only_that_class():
    # 60 fits: the 40 that converged have uniform ranks, the 20 that did not rank every truth at 0.
    s = SBCSettings(replications=60, num_samples=50, ranks_of=99, bins=10)
    ok = np.arange(60) < 40
    ranks = pd.DataFrame({"replication": np.arange(60), "inference": "NUTS", "parameter": "roi[tv]",
                          "rank": np.where(ok, np.arange(60) * 100 // 40 % 100, 0)})
    fits = pd.DataFrame({"replication": np.arange(60), "inference": "NUTS", "converged": ok})
    res = SBCResult(s, ranks, fits)
    good, bad, both = (uniformity(res, converged=c, bins=5) for c in (True, False, None))
    assert good["n"].item() == 40 and bad["n"].item() == 20 and both["n"].item() == 60
    assert not good["rejected"].item() and bad["rejected"].item() and both["rejected"].item()
    assert bad["low_tail"].item() == 1.0 and good["coverage_90"].item() == pytest.approx(36 / 40)
    with pytest.raises(ValueError, match="bins"):
        uniformity(res, bins=7)
    none = uniformity(SBCResult(s, ranks, fits.assign(converged=True)), converged=False)
    assert none.empty and {"inference", "rejected", "coverage_90"} <= set(none.columns)


def test_a_cost_prior_study_runs_nuts_alone_and_marks_converged_fits():
    s = SBCSettings(replications=2, media_prior="cost", target_accept_prob=0.85, num_warmup=30, num_samples=30,
                    svi_steps=0, ranks_of=49, bins=5)
    res = run_sbc(s, easy_world(1, n_weeks=20).data, seed=0)
    assert set(res.ranks["inference"]) == {"NUTS"} and len(res.ranks) == 2 * 16
    assert res.fits["converged"].dtype == bool and res.fits["divergence_rate"].between(0, 1).all()
    assert (res.fits["converged"] == ((res.fits["max_rhat"] <= 1.01) & (res.fits["divergence_rate"] < 0.01))).all()


def test_mutations_are_ranked_beside_nuts_and_a_narrow_posterior_piles_ranks_at_the_ends():
    s = SBCSettings(replications=2, num_warmup=30, num_samples=30, svi_steps=0, ranks_of=49, bins=5, mutations=True)
    res = run_sbc(s, easy_world(1, n_weeks=20).data, seed=0)
    arms = set(res.ranks["inference"])
    assert arms == {"NUTS", "NUTS, 20% too narrow", "NUTS, biased by 0.3 sd"}
    pooled = uniformity(res, pooled=True)
    assert set(pooled["parameter"]) == {"roi", "lag_weight", "half_max_effective_concentration", "slope"}
    assert (pooled["n"] == 2 * 4).all()
    # converged=... keeps a mutation with its own NUTS fit: a class holds the same replications in every arm
    fits = res.fits.assign(converged=[True, False])
    split = SBCResult(s, res.ranks, fits)
    for flag, rep in ((True, 0), (False, 1)):
        kept = res.ranks.merge(fits.loc[fits["converged"] == flag, ["replication"]], on="replication")
        assert set(kept["replication"]) == {rep}
        table = uniformity(split, converged=flag)
        assert len(table) == 3 * 16 and (table["n"] == 1).all()


def test_ranks_in_unconstrained_coordinates_match_plain_ranks_and_mutations_move_them():
    from mmmlib.bayes.calibration import _ranks

    rng = np.random.default_rng(1)
    draws = {"lag_weight": rng.beta(2, 2, size=(400, 1))}
    roi = rng.lognormal(0.0, 0.5, size=(400, 1))
    truth = {"roi": np.array([1.3]), "lag_weight": np.array([0.7])}
    checked = [("roi[a]", "roi", 0), ("lag_weight[a]", "lag_weight", 0)]
    plain = _ranks(truth, draws, roi, checked, 99)
    keep = np.unique(np.linspace(0, 399, 99).round().astype(int))
    assert plain == {"roi[a]": int((roi[keep, 0] < 1.3).sum()), "lag_weight[a]": int((draws["lag_weight"][keep, 0] < 0.7).sum())}
    narrow = _ranks(truth, draws, roi, checked, 99, scale=0.5)
    shifted = _ranks(truth, draws, roi, checked, 99, shift=1.0)
    # by hand: the distortion acts on log ROI and logit decay, about the mean of all draws
    lr, lw = np.log(roi[:, 0]), logit(draws["lag_weight"][:, 0])
    lr_n, lw_n = lr.mean() + 0.5 * (lr - lr.mean()), lw.mean() + 0.5 * (lw - lw.mean())
    assert narrow == {"roi[a]": int((lr_n[keep] < np.log(1.3)).sum()), "lag_weight[a]": int((lw_n[keep] < logit(0.7)).sum())}
    assert shifted == {"roi[a]": int((lr[keep] + lr.std() < np.log(1.3)).sum()),
                       "lag_weight[a]": int((lw[keep] + lw.std() < logit(0.7)).sum())}
    with pytest.raises(ValueError, match="non-finite"):
        _ranks(truth, {"lag_weight": np.full((400, 1), np.nan)}, roi, checked, 99)


def test_the_sites_ranked_on_the_logit_scale_are_those_whose_prior_lives_in_the_unit_interval():
    # Read from the model's priors, not listed by hand: a Beta-distributed site is logit-scaled,
    # a Gamma or half-normal one log-scaled.
    from mmmlib.bayes.calibration import UNIT_INTERVAL_SITES

    assert UNIT_INTERVAL_SITES == {"lag_weight", "exponent", "ad_effect_retention_rate"}
    assert not UNIT_INTERVAL_SITES & {"half_max_effective_concentration", "slope", "peak_effect_delay"}
