"""Simulated worlds with known ground truth.

Chapter 0 introduces the media-panel world of :mod:`mmmlib.worlds.media`; later
chapters add their own simulators beside it (funnel, survey, time-varying coefficients).
"""

from mmmlib.worlds.media import (
    ChannelSpec,
    GroundTruth,
    SimulatedWorld,
    WorldConfig,
    channel_correlation,
    easy_world,
    hard_world,
    simulate_media_world,
    toy_world,
)

__all__ = [
    "ChannelSpec",
    "GroundTruth",
    "SimulatedWorld",
    "WorldConfig",
    "channel_correlation",
    "easy_world",
    "hard_world",
    "simulate_media_world",
    "toy_world",
]
