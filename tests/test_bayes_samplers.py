"""The book's NUTS (:mod:`mmmlib.inference.nuts`) draws from the same posterior as Pyro's NUTS.

Pyro's NUTS runs on the very density the book samples (:class:`NationalDensity`, wrapped as a
torch potential with its hand-written gradient), so the comparison isolates the sampler; that the
density is the Pyro program's is tested in ``test_bayes_density.py``, and simulation-based
calibration (Chapter 7) checks both together. Every posterior mean and 5% / 95% quantile must
agree within :data:`~mmmlib.bayes.lightweight.AGREEMENT_Z` combined Monte Carlo standard errors
(:func:`mmmlib.inference.diagnostics.compare_draws`).
"""

from __future__ import annotations

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import MCMC, NUTS

from mmmlib.bayes.lightweight import AGREEMENT_Z
from mmmlib.bayes.model import BayesianMMM
from mmmlib.inference.diagnostics import compare_draws
from mmmlib.inference.nuts import sample_nuts
from mmmlib.runtime import setup
from mmmlib.worlds import easy_world

WARMUP, DRAWS, CHAINS = 200, 300, 2
SITES = ("roi", "lag_weight", "half_max_effective_concentration", "slope", "sigma", "intercept")


class _Potential(torch.autograd.Function):
    """Minus the NumPy log density, with its gradient, as a torch function of ``z``."""

    @staticmethod
    def forward(ctx, z, density):
        lp, grad = density(z.detach().numpy())
        ctx.save_for_backward(torch.as_tensor(-grad))
        return torch.as_tensor(-lp, dtype=z.dtype)

    @staticmethod
    def backward(ctx, g_out):
        (g,) = ctx.saved_tensors
        return g_out * g, None


@pytest.fixture(scope="module")
def draws():
    setup(0)
    w = easy_world(seed=3, n_weeks=40)
    density = BayesianMMM("hill_adstock", media_prior="roi").density(w.data, coordinates="level")
    z0 = density.unconstrain(density.prior_median())
    ours = sample_nuts(density, np.tile(z0, (CHAINS, 1)), num_warmup=WARMUP, num_samples=DRAWS, chains=CHAINS,
                       seed=0, target_accept_prob=0.9, dense_mass=True, processes=1)
    pyro_chains = []
    for c in range(CHAINS):
        pyro.set_rng_seed(100 + c)
        kernel = NUTS(potential_fn=lambda p: _Potential.apply(p["z"], density), target_accept_prob=0.9,
                      full_mass=True, max_tree_depth=10)
        mcmc = MCMC(kernel, num_samples=DRAWS, warmup_steps=WARMUP, initial_params={"z": torch.as_tensor(z0)},
                    disable_progbar=True)
        mcmc.run()
        pyro_chains.append(mcmc.get_samples()["z"].numpy())

    def by_site(chains):
        per = [density.constrain(c) for c in chains]
        return {k: np.stack([p[k] for p in per]) for k in SITES}

    return by_site(list(ours.draws)), by_site(pyro_chains)


def test_book_nuts_agrees_with_pyro_nuts_on_the_same_density(draws):
    ours, theirs = draws
    table = compare_draws(ours, theirs)
    assert len(table) == 3 * (4 * 4 + 2)
    worst = table.loc[table["z"].abs().idxmax()]
    assert table["z"].abs().max() <= AGREEMENT_Z, f"samplers disagree: {worst.to_dict()}"


def test_the_agreement_check_has_power(draws):
    """The same draws with one ROI shifted by half its posterior sd are flagged."""
    ours, theirs = draws
    shifted = {k: v.copy() for k, v in ours.items()}
    shifted["roi"][..., 0] += 0.5 * ours["roi"][..., 0].std()
    assert compare_draws(shifted, theirs)["z"].abs().max() > AGREEMENT_Z
