"""The book's look: one seaborn theme and one colour per channel, shared by every chapter's figures.

The figures themselves live with what they show (e.g. :mod:`mmmlib.worlds.plots`,
:mod:`mmmlib.bayes.plots`); each takes the objects of its system, draws a figure a reader
understands without the text (titles, axis labels with units, legends) and returns the
:class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import seaborn as sns

__all__ = ["set_theme", "channel_palette"]


def set_theme() -> None:
    """The book's look: seaborn whitegrid, colour-blind palette, fixed size and DPI."""
    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    plt.rcParams.update(
        {
            "figure.figsize": (9.0, 4.5),
            "figure.dpi": 100,
            "savefig.dpi": 100,
            "axes.titleweight": "bold",
            "axes.titlesize": 12,
            "legend.frameon": False,
            "figure.constrained_layout.use": True,
        }
    )


def channel_palette(channels: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """One fixed colour per channel, the same in every figure."""
    colours = sns.color_palette("colorblind", n_colors=max(len(channels), 3))
    return dict(zip(channels, colours, strict=False))
