"""What a brand-tracking survey observes: the container the twin model takes (a simulated survey's
or a real one's), validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SurveyData", "validate_survey"]


@dataclass(frozen=True)
class SurveyData:
    """What a survey observes: covariates, levers and ordinal answers.

    Attributes
    ----------
    x : ndarray, shape (N, P)
        Respondent covariates.
    levers : ndarray, shape (N, K, M)
        Lever values per respondent and brand.
    y : ndarray of int, shape (N, K, J)
        Answers, 0-based category indices.
    n_categories : tuple of int
        Categories of each item (length J).
    item_dim : tuple of int
        Dimension measured by each perceptual item, ``-1`` for outcome items.
    items, brands, levers_names : tuple of str
        Names, for errors and tables.
    """

    x: np.ndarray
    levers: np.ndarray
    y: np.ndarray
    n_categories: tuple[int, ...]
    item_dim: tuple[int, ...]
    items: tuple[str, ...]
    brands: tuple[str, ...]
    lever_names: tuple[str, ...]

    def __post_init__(self) -> None:
        validate_survey(self)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def outcome_items(self) -> tuple[int, ...]:
        return tuple(j for j, d in enumerate(self.item_dim) if d < 0)

    def subset(self, rows: np.ndarray) -> SurveyData:
        """The respondents ``rows`` (an index array), same items and brands."""
        return SurveyData(self.x[rows], self.levers[rows], self.y[rows], self.n_categories, self.item_dim,
                          self.items, self.brands, self.lever_names)


def validate_survey(d: SurveyData) -> None:
    """Raise ``ValueError`` naming the respondent, brand, item or lever that is wrong."""
    if d.y.ndim != 3:
        raise ValueError(f"y must have shape (respondents, brands, items), got {d.y.shape}")
    n, k, j = d.y.shape
    if d.x.ndim != 2 or d.x.shape[0] != n:
        raise ValueError(f"x must have shape ({n}, covariates), got {d.x.shape}")
    if d.levers.ndim != 3 or d.levers.shape[:2] != (n, k):
        raise ValueError(f"levers must have shape ({n}, {k}, levers), got {d.levers.shape}")
    if len(d.n_categories) != j or len(d.item_dim) != j or len(d.items) != j:
        raise ValueError(f"n_categories, item_dim and items must each have {j} entries (one per item)")
    if len(d.brands) != k or len(d.lever_names) != d.levers.shape[2]:
        raise ValueError("brands and lever_names must match the brand and lever axes")
    bad = ~np.isfinite(d.x)
    if bad.any():
        i, p = np.argwhere(bad)[0]
        raise ValueError(f"covariate {p} of respondent row {i} is not finite ({d.x[i, p]})")
    bad = ~np.isfinite(d.levers)
    if bad.any():
        i, b, m = np.argwhere(bad)[0]
        raise ValueError(f"lever {d.lever_names[m]!r} of brand {d.brands[b]!r} in respondent row {i} is not finite")
    if not np.issubdtype(d.y.dtype, np.integer):
        raise ValueError(f"y must hold integer category indices, got dtype {d.y.dtype}")
    cats = np.asarray(d.n_categories)
    bad = (d.y < 0) | (d.y >= cats[None, None, :])
    if bad.any():
        i, b, jj = np.argwhere(bad)[0]
        raise ValueError(f"answer {d.y[i, b, jj]} to item {d.items[jj]!r} about brand {d.brands[b]!r} in respondent "
                         f"row {i} is outside 0..{cats[jj] - 1}")
