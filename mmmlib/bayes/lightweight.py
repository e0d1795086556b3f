"""Chapter 1's check against the original: the port and LightweightMMM 0.1.9 on the same data.

Both fit the same model (transform, cost prior, LightweightMMM's raw trend index) with NUTS,
2 chains x (warm-up + draws); each channel's ROI posterior mean and 5% / 95% quantiles are
compared within Monte Carlo error (:func:`mmmlib.inference.diagnostics.compare_draws`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mmmlib.bayes.lwmm import LightweightRun, run_lightweightmmm
from mmmlib.bayes.model import BayesianMMM
from mmmlib.bayes.model import _weekly_spend as weekly_spend
from mmmlib.inference.diagnostics import compare_draws
from mmmlib.worlds.media import SimulatedWorld

__all__ = ["AGREEMENT_Z", "Agreement", "compare_with_lightweightmmm", "roi_draws_by_chain"]

AGREEMENT_Z = 4.0
"""Largest difference, in combined Monte Carlo standard errors, still called agreement. With
4 channels x 3 statistics x 6 cells, two exact samplers of one posterior exceed 3 MCSE somewhere
in about one comparison of five; 4 MCSE in about one of two hundred."""


@dataclass(frozen=True)
class Agreement:
    """Port and original on one world and model.

    Attributes
    ----------
    original : LightweightRun
        LightweightMMM's posterior.
    table : pandas.DataFrame
        Per channel and statistic (``mean``, ``q05``, ``q95`` of ROI): both estimates, the
        difference, the combined MCSE and ``z``.
    port_seconds, original_seconds : float
        Wall time of each fit.
    port_divergences, original_divergences : int
    """

    world: str
    model: str
    table: pd.DataFrame
    original: LightweightRun
    port_seconds: float
    original_seconds: float
    port_divergences: int
    original_divergences: int

    @property
    def max_abs_z(self) -> float:
        return float(self.table["z"].abs().max())

    @property
    def agrees(self) -> bool:
        return self.max_abs_z <= AGREEMENT_Z


def roi_draws_by_chain(mmm: BayesianMMM, chains: int) -> np.ndarray:
    """ROI per draw of a fitted model, ``(chains, draws, C)`` (draws are stored chain after chain)."""
    contrib = mmm.contribution_draws().sum(axis=1)  # (S, C)
    roi = contrib / weekly_spend(mmm.data_.spend_array()).sum(axis=0)[None, :]
    return roi.reshape(chains, -1, roi.shape[-1])


def compare_with_lightweightmmm(
    port: BayesianMMM,
    world: SimulatedWorld,
    num_warmup: int | None = None,
    num_samples: int | None = None,
    chains: int | None = None,
    seed: int = 0,
    target_accept_prob: float | None = None,
) -> Agreement:
    """Fit LightweightMMM 0.1.9 to the world's data with the settings of the fitted ``port``
    (a cost-prior :class:`BayesianMMM` fitted by NUTS, its cost prior scaled by the port's
    ``cost_prior_multiplier``) and compare their ROI posteriors. NUTS settings left ``None`` are
    the port's own (warm-up, draws, chains, target acceptance). Raises
    :class:`~mmmlib.bayes.lwmm.PeerUnavailable` without the peer environment, and ``ValueError``
    for a port that is not LightweightMMM's model."""
    if port.media_prior != "cost" or port.trend_index != "raw":
        raise ValueError("the port must use LightweightMMM's model: media_prior='cost', trend_index='raw'")
    if port.diagnostics().inference != "nuts":
        raise ValueError("compare a NUTS fit of the port")
    used = port.sampler_settings_
    chains = used["chains"] if chains is None else chains
    original = run_lightweightmmm(world.data, model=port.model_name,
                                  num_warmup=used["num_warmup"] if num_warmup is None else num_warmup,
                                  num_samples=used["num_samples"] if num_samples is None else num_samples,
                                  chains=chains, seed=seed,
                                  target_accept_prob=used["target_accept_prob"] if target_accept_prob is None else target_accept_prob,
                                  degrees_seasonality=port.seasonality_degrees,
                                  seasonality_frequency=int(round(port.seasonality_period)),
                                  cost_multiplier=port.cost_prior_multiplier)
    channels = list(world.data.channels)
    table = compare_draws({"roi": roi_draws_by_chain(port, chains)}, {"roi": original.roi_draws})
    table["channel"] = [channels[int(p.split("[")[1].rstrip("]"))] for p in table["parameter"]]
    table = table.rename(columns={"estimate_a": "port", "estimate_b": "original"})
    table = table[["channel", "statistic", "port", "original", "difference", "mcse", "z"]]
    return Agreement(
        world=world.config.name, model=port.model_name, table=table, original=original,
        port_seconds=port.diagnostics().fit_seconds, original_seconds=original.seconds,
        port_divergences=port.diagnostics().divergences, original_divergences=original.divergences,
    )
