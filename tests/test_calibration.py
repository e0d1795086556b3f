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
