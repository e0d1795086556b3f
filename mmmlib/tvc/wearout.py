r"""A second world family for Chapter 5: creative wear-out with resets, and large regime jumps.

The log-OU world (:func:`mmmlib.tvc.world.simulate_tvc`) moves every media coefficient by a
Gaussian AR(1) in :math:`\log\beta`, which is what a Gaussian state-space prior expresses; a
smoother with that prior is nearly its exact posterior. Marketing has dynamics such a prior
cannot write: a creative wears out as people see it and a new creative restores its effect (a
sawtooth with resets at random times), and a repositioning moves a channel's effectiveness to a
new level at once. In this family

.. math::

    \beta_{itc} = a_{ic}\, m_{itc},\qquad m_{itc} = \exp\!\big(J_{itc} - \rho\,E_{itc}\big),

where :math:`a_{ic} = e^{\mu_{ic}}` is the coefficient of a fresh creative at the series' first
level (:math:`\mu_{ic} \sim \mathcal N(\log a^\star_c, \sigma_\mu^2)`), :math:`E_{itc}` the media
pressure the current creative has had,

.. math::

    E_{itc} = (1 - L_{itc})\,E_{i,t-1,c} + x_{itc},\qquad L_{itc} \sim \mathrm{Bernoulli}(\lambda_L),
    \quad L_{i0c} = 1,

(a launch :math:`L` resets it; the effect wears out only while the channel is on air, since
:math:`x = 0` off air), and :math:`J` a jump process,

.. math::

    J_{itc} = J_{i,t-1,c} + N_{itc}\,\xi_{itc},\qquad N \sim \mathrm{Bernoulli}(\lambda_J),
    \quad \xi \sim \mathcal N(0, \sigma_J^2),\quad J_{i0c} = 0.

Spend, media transforms, controls, baseline and noise are those of the log-OU world
(:class:`~mmmlib.tvc.world.TVCConfig`), so the two families differ only in how media
effectiveness moves. The result is a :class:`~mmmlib.tvc.world.TVCWorld`: every model of
Chapter 5 takes it unchanged. Wear-in (a new creative that needs a few exposures before it
works) is not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmmlib.tvc.world import TVCConfig, TVCWorld, _begin_world, _complete_world

__all__ = ["WearoutDynamics", "WearoutPaths", "simulate_wearout", "wearout_multiplier"]


@dataclass(frozen=True)
class WearoutDynamics:
    """How media effectiveness moves in the wear-out family.

    Attributes
    ----------
    launch_rate : float
        Weekly probability :math:`\\lambda_L` that a channel launches a new creative (a reset).
    wear_rate : float
        Log effectiveness lost per unit of transformed media pressure :math:`\\rho` (a channel at
        full pressure, :math:`x \\approx 0.5`, loses about ``wear_rate / 2`` of log effect a week).
    jump_rate, jump_sd : float
        Weekly probability :math:`\\lambda_J` and log-size sd :math:`\\sigma_J` of a regime jump.
    fresh_over_median : float
        A fresh creative's coefficient over the channel's median coefficient in
        :class:`~mmmlib.tvc.world.TVCConfig` (so the two families have effects of similar size).
    """

    launch_rate: float = 1 / 12
    wear_rate: float = 0.25
    jump_rate: float = 1 / 52
    jump_sd: float = 0.6
    fresh_over_median: float = 1.5

    def __post_init__(self) -> None:
        for name in ("launch_rate", "jump_rate"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"WearoutDynamics.{name} is a weekly probability in [0, 1], got {v!r}")
        for name in ("wear_rate", "jump_sd"):
            v = getattr(self, name)
            if not v >= 0:
                raise ValueError(f"WearoutDynamics.{name} must be non-negative, got {v!r}")
        if not self.fresh_over_median > 0:
            raise ValueError(f"WearoutDynamics.fresh_over_median must be positive, got {self.fresh_over_median!r}")


@dataclass
class WearoutPaths:
    """The latent processes behind a wear-out world's coefficients, each shape (N, T, C).

    Attributes
    ----------
    launch : ndarray of bool
        Weeks a new creative launched (always the first week).
    exposure : ndarray
        Media pressure :math:`E` of the current creative.
    jump : ndarray
        Cumulative regime jumps :math:`J`.
    fresh : ndarray, shape (N, C)
        Coefficient :math:`a` of a fresh creative at the first level.
    """

    launch: np.ndarray
    exposure: np.ndarray
    jump: np.ndarray
    fresh: np.ndarray


def wearout_multiplier(media: np.ndarray, launch: np.ndarray, jump: np.ndarray, wear_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """The multiplier :math:`m = \\exp(J - \\rho E)` of given launches and jumps.

    Parameters
    ----------
    media : ndarray, shape (..., T, C)
        Transformed media :math:`x`.
    launch : ndarray of bool, shape (..., T, C)
        Launch weeks (the first week counts as a launch whatever it holds).
    jump : ndarray, shape (..., T, C)
        Cumulative log jumps :math:`J`.
    wear_rate : float
        :math:`\\rho`.

    Returns
    -------
    multiplier, exposure : ndarray, shape (..., T, C)
    """
    media = np.asarray(media, dtype=float)
    exposure = np.empty_like(media)
    e = np.zeros(media.shape[:-2] + media.shape[-1:])
    for t in range(media.shape[-2]):
        reset = launch[..., t, :] if t > 0 else np.ones_like(e, dtype=bool)
        e = np.where(reset, 0.0, e) + media[..., t, :]
        exposure[..., t, :] = e
    return np.exp(jump - wear_rate * exposure), exposure


def simulate_wearout(
    config: TVCConfig | None = None,
    dynamics: WearoutDynamics | None = None,
    n_series: int = 1000,
    seed: int = 0,
) -> tuple[TVCWorld, WearoutPaths]:
    """Simulate ``n_series`` series whose media effects wear out, reset and jump.

    Parameters
    ----------
    config : TVCConfig, optional
        Everything but the media coefficients' dynamics (``vol_media``, ``jump_rate`` and
        ``jump_sd`` of the config are not used: ``dynamics`` replaces them).
    dynamics : WearoutDynamics, optional
        Launches, wear-out and jumps.
    n_series : int
        Number of series.
    seed : int
        Seed; the same seed gives the same world.

    Returns
    -------
    world : TVCWorld
        Data and truth, as for the log-OU family.
    paths : WearoutPaths
        The launches, exposures and jumps behind ``world.beta``.
    """
    cfg = config or TVCConfig()
    dyn = dynamics or WearoutDynamics()
    rng, spend, media = _begin_world(cfg, n_series, seed)
    n, t, c = n_series, cfg.n_weeks, len(cfg.channels)

    fresh = np.asarray(cfg.beta_median)[None, :] * dyn.fresh_over_median * np.exp(
        rng.normal(0.0, cfg.beta_spread, (n, c)))
    launch = rng.random((n, t, c)) < dyn.launch_rate
    launch[:, 0] = True
    steps = (rng.random((n, t, c)) < dyn.jump_rate) * rng.normal(0.0, dyn.jump_sd, (n, t, c))
    steps[:, 0] = 0.0
    jump = np.cumsum(steps, axis=1)
    mult, exposure = wearout_multiplier(media, launch, jump, dyn.wear_rate)
    beta = fresh[:, None, :] * mult

    world = _complete_world(rng, cfg, spend, media, beta, seed)  # controls, baseline, noise: as log-OU
    return world, WearoutPaths(launch=launch, exposure=exposure, jump=jump, fresh=fresh)
