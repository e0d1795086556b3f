r"""A funnel world outside the model's family: what Chapter 2's fit meets on data it did not generate.

:func:`mmmlib.funnel.world.simulate_uac_world` runs the model's own equations, and the fit is told
that world's Hill shape and initial activated share. :func:`simulate_outside_world` departs from
that home field in four ways a real market would, and the fit is told none of them:

- **heterogeneity within segments**: each segment is ``subgroups`` equal groups of consumers whose
  media effects differ by log-normal factors with sd ``within_sd`` (mean one), drawn per market;
  the model sees only the segment's total;
- **lagged media**: TV and display spend moves the funnel ``lag_days`` days after it is paid for
  (the delivery and recall lags of upper-funnel media; search acts the same day), where the model
  lets every channel act the same day;
- **another response curve**: the world's Hill half-saturation and slope are ``hill_k`` and
  ``hill_slope``; the model keeps the home-field curve of the base configuration;
- **another starting state**: ``initial_active`` of every group is activated on day 0; the model
  keeps the base configuration's share.

The truth reported for a segment's media effect is the size-weighted mean over its groups (the
effect of an average consumer of the segment); attribution is the world's own counterfactual
removal of each channel, through its groups, lag and curve, which is the quantity a planner uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from mmmlib.funnel.model import CHANNELS, attribution, funnel, media_pressure
from mmmlib.funnel.world import UACWorld, UACWorldConfig, simulate_spend, true_params

__all__ = ["DEPARTURES", "OutsideConfig", "one_departure", "simulate_outside_world"]

#: The four departures from the home field, by name (see :func:`one_departure`).
DEPARTURES = ("heterogeneity", "lag", "curve", "start")


@dataclass(frozen=True)
class OutsideConfig:
    """A funnel world outside the model's family (see the module docstring).

    Attributes
    ----------
    home : UACWorldConfig
        The home-field world it departs from; its ``hill_k``, ``hill_slope`` and
        ``initial_active`` are what the model assumes.
    subgroups : int
        Groups of consumers per segment.
    within_sd : float
        Standard deviation of the log media effects across a segment's groups.
    lag_days : int
        Days between spend on the ``lagged`` channels and its effect on the funnel.
    lagged : tuple of str
        The channels whose effect lags.
    hill_k, hill_slope : float
        The world's Hill curve of spend over its mean.
    initial_active : float
        Share of every group activated before day 1.
    name : str
        Label in tables.
    """

    home: UACWorldConfig = field(default_factory=UACWorldConfig)
    subgroups: int = 2
    within_sd: float = 0.5
    lag_days: int = 3
    lagged: tuple[str, ...] = ("tv", "display")
    hill_k: float = 0.8
    hill_slope: float = 1.3
    initial_active: float = 0.3
    name: str = "outside"

    def __post_init__(self) -> None:
        if self.subgroups < 1:
            raise ValueError(f"OutsideConfig.subgroups must be >= 1, got {self.subgroups}")
        if not (np.isfinite(self.within_sd) and self.within_sd >= 0):
            raise ValueError(f"OutsideConfig.within_sd must be >= 0, got {self.within_sd}")
        if not 0 <= self.lag_days < self.home.n_days // 2:
            raise ValueError(f"OutsideConfig.lag_days must be in [0, {self.home.n_days // 2}), got {self.lag_days}")
        if any(c not in CHANNELS for c in self.lagged):
            raise ValueError(f"OutsideConfig.lagged must name channels of {CHANNELS}, got {self.lagged}")
        if not (self.hill_k > 0 and self.hill_slope > 0):
            raise ValueError(f"OutsideConfig needs hill_k > 0 and hill_slope > 0, got {self.hill_k}, {self.hill_slope}")
        if not 0 <= self.initial_active < 1:
            raise ValueError(f"OutsideConfig.initial_active must be in [0, 1), got {self.initial_active}")

    @property
    def n_days(self) -> int:
        return self.home.n_days

    @property
    def market_size(self) -> float:
        return self.home.market_size


def one_departure(config: OutsideConfig, departure: str) -> OutsideConfig:
    """``config`` with only one of its :data:`DEPARTURES` from the home field left in place.

    Examples
    --------
    >>> c = one_departure(OutsideConfig(), "lag")
    >>> c.lag_days, c.within_sd, c.hill_k == c.home.hill_k
    (3, 0.0, True)
    """
    if departure not in DEPARTURES:
        raise ValueError(f"departure must be one of {DEPARTURES}, got {departure!r}")
    home = config.home
    off = dict(heterogeneity=dict(subgroups=1, within_sd=0.0), lag=dict(lag_days=0),
               curve=dict(hill_k=home.hill_k, hill_slope=home.hill_slope), start=dict(initial_active=home.initial_active))
    changes = {k: v for name, kv in off.items() if name != departure for k, v in kv.items()}
    return replace(config, name=departure, **changes)


def simulate_outside_world(config: OutsideConfig = OutsideConfig(), seed: int = 0) -> UACWorld:
    """Simulate a funnel market outside the model's family.

    Returns a :class:`~mmmlib.funnel.world.UACWorld` whose ``config`` is the home-field
    configuration (what the model assumes), whose ``truth`` holds the segments' mean media effects
    and the world's own Hill curve, and whose ``true_share`` is the world's attribution.

    Examples
    --------
    >>> w = simulate_outside_world(OutsideConfig(home=UACWorldConfig(n_days=60)), seed=1)
    >>> w.conversions.shape, round(float(w.true_share.sum()), 6)
    ((60, 3), 1.0)
    """
    home = config.home
    rng = np.random.default_rng([seed, 1729])
    spend = simulate_spend(home.n_days, rng)
    params, mask = true_params(replace(home, hill_k=config.hill_k, hill_slope=config.hill_slope))
    K, J, C = len(home.attributes), config.subgroups, len(CHANNELS)
    factors = np.exp(rng.normal(0.0, config.within_sd, (K, J, C)) - config.within_sd**2 / 2)
    groups = params.torch()
    for name in ("beta_ua", "beta_ac"):
        groups[name] = torch.as_tensor(getattr(params, name)[:, None, :] * factors).reshape(K * J, C)
    for name in ("alpha_ua", "alpha_ac", "forget"):
        groups[name] = torch.as_tensor(np.repeat(getattr(params, name), J))
    sizes = np.full(K, home.market_size / K)
    group_sizes = torch.as_tensor(np.repeat(sizes / J, J))
    x = spend.to_numpy() / spend.to_numpy().mean(axis=0)
    for c in (CHANNELS.index(ch) for ch in config.lagged):
        x[:, c] = np.concatenate([np.repeat(x[:1, c], config.lag_days), x[: home.n_days - config.lag_days, c]])
    x_t = torch.as_tensor(x)
    with torch.no_grad():
        pressure = media_pressure(x_t, groups["hill_k"], groups["hill_slope"], groups["spillover"], groups["spill_decay"])
        conv, _ = funnel(groups, pressure, group_sizes, mask, config.initial_active)
        contrib = attribution(groups, x_t, group_sizes, mask, config.initial_active).numpy()
    mean = conv.numpy().reshape(K, J, -1).sum(axis=1) + params.base[:, None]
    observed = rng.poisson(rng.gamma(home.dispersion, mean / home.dispersion))
    conversions = pd.DataFrame(observed.T.astype(np.float64), columns=[f"segment_{k + 1}" for k in range(K)],
                               index=spend.index)
    weights = np.full(J, 1.0 / J)
    truth = replace(params,
                    beta_ua=np.einsum("j,kjc->kc", weights, params.beta_ua[:, None, :] * factors),
                    beta_ac=np.einsum("j,kjc->kc", weights, params.beta_ac[:, None, :] * factors))
    share = pd.Series(contrib / contrib.sum(), index=pd.Index(CHANNELS, name="channel"), name="share")
    return UACWorld(config=home, spend=spend, conversions=conversions, sizes=sizes,
                    attributes=np.asarray(home.attributes, dtype=np.float64), truth=truth, true_mask=mask,
                    true_share=share, mean=mean)
