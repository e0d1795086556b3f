"""A family of media worlds whose truth is drawn per seed.

The presets of :mod:`mmmlib.worlds.media` keep every channel's return, carry-over and response
curve fixed and draw only the spend and the noise. A prior that happens to sit near those
returns scores well on them by construction. The family draws, per seed, what a model is asked
to recover: each channel's ROI (log-uniform between :data:`ROI_RANGE`), its adstock decay, Hill
half-saturation and slope, how its spend moves (flighted, always on, or moving with other
channels), and the world's noise and spend correlation. A model that learns ROI from data has to
beat its own prior's median here, where no fixed prior can sit near every world's truth.

Seeds are split once, before any model is run on the family: :data:`TUNING_SEEDS` for
developing priors and settings, :data:`EVALUATION_SEEDS` for the numbers a chapter reports.

Examples
--------
>>> from mmmlib.worlds.family import drawn_world, family_spec
>>> spec = family_spec(1000)
>>> len(spec.channels), spec.name
(4, 'drawn-1000')
>>> world = drawn_world(1000, n_weeks=52)
>>> bool((world.truth.roi > 0).all()), world.data.n_times
(True, 52)
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mmmlib.worlds.media import ChannelSpec, SimulatedWorld, WorldConfig, simulate_media_world

__all__ = ["EVALUATION_SEEDS", "ROI_RANGE", "TUNING_SEEDS", "drawn_world", "family_spec"]

ROI_RANGE = (0.25, 4.0)
"""True ROIs are log-uniform on this range: a channel can lose three quarters of its spend or
return four times it, the span reported across published marketing-mix studies."""

TUNING_SEEDS = tuple(range(0, 20))
"""Seeds on which priors and settings may be developed and compared."""

EVALUATION_SEEDS = tuple(range(1000, 1020))
"""Seeds whose numbers a chapter reports; nothing is chosen by looking at them."""

_NAMES = ("tv", "search", "social", "display")


def family_spec(seed: int, n_weeks: int = 156, n_channels: int = 4) -> WorldConfig:
    """The configuration drawn for one seed of the family (the truth, before any spend is drawn).

    Per channel: ROI log-uniform on :data:`ROI_RANGE`; decay uniform on [0, 0.7); Hill
    half-saturation log-uniform on [0.5, 2] (in units of the channel's mean media level) and
    slope uniform on [0.8, 2.5]; mean weekly spend log-uniform on [4, 25] (thousands). The first
    channel is flighted, the others always on or moving with a shared process, drawn. Per world:
    noise 4-10% of mean sales, correlation weight 0.2-0.85.

    Parameters
    ----------
    seed : int
        The world's seed (non-negative).
    n_weeks : int
        Weekly periods.
    n_channels : int
        Channels, 1 to 4.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 1 <= n_channels <= len(_NAMES):
        raise ValueError(f"n_channels must be between 1 and {len(_NAMES)}, got {n_channels}")
    # its own stream, apart from the one simulate_media_world draws the spend and noise from
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x46414D]))
    lo, hi = np.log(ROI_RANGE)
    channels = []
    for c in range(n_channels):
        pattern = "flighted" if c == 0 else str(rng.choice(["always_on", "correlated"]))
        channels.append(ChannelSpec(
            _NAMES[c], pattern,
            mean_spend=float(np.exp(rng.uniform(np.log(4.0), np.log(25.0)))),
            cost_per_unit=float(rng.uniform(0.002, 0.01)),
            roi=float(np.exp(rng.uniform(lo, hi))),
            decay=float(rng.uniform(0.0, 0.7)),
            half_saturation=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
            slope=float(rng.uniform(0.8, 2.5)),
        ))
    return WorldConfig(name=f"drawn-{seed}", n_weeks=n_weeks, channels=tuple(channels),
                       noise_cv=float(rng.uniform(0.04, 0.10)), correlation=float(rng.uniform(0.2, 0.85)))


def drawn_world(seed: int, n_weeks: int = 156, n_channels: int = 4, **overrides) -> SimulatedWorld:
    """One world of the family: :func:`family_spec` for ``seed``, simulated with the same seed.

    ``overrides`` replace fields of the drawn :class:`~mmmlib.worlds.media.WorldConfig` (for
    example ``n_geos``).
    """
    return simulate_media_world(replace(family_spec(seed, n_weeks, n_channels), **overrides), seed=seed)
