r"""Simulated U-A-C funnel worlds with known parameters and attribution (Chapter 2).

Two generators:

- :func:`simulate_uac_world`: the *repaired* funnel of the spec (logit-additive hazards,
  converters return to the unaware pool so each segment's size is conserved), with TV's
  spillover into brand search. Its dynamics are :func:`mmmlib.funnel.model.funnel` itself, so
  the generator and the model cannot disagree about the equations; daily conversions per
  segment are negative-binomial around the funnel's mean plus an organic base.
- :func:`simulate_source_dgp`: Diff-MMM's generator as its code is described in the spec
  (§1.2), bugs included: per-channel "incremental probabilities" are *added*, so a day's total
  activation probability exceeds 1, mass is created, and the market dies within three months.
  It exists to show what the original experiment was fitting.

See Chapter 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mmmlib.funnel.model import (
    CHANNELS,
    FunnelMask,
    FunnelParams,
    attribution,
    funnel,
    media_pressure,
)

__all__ = [
    "SEGMENT_ATTRIBUTES",
    "UACWorldConfig",
    "UACWorld",
    "simulate_spend",
    "true_params",
    "simulate_uac_world",
    "simulate_source_dgp",
]

# (age, female, urban) of the three segments of Diff-MMM
SEGMENT_ATTRIBUTES = ((0.30, 0.65, 0.85), (0.50, 0.50, 0.50), (0.70, 0.45, 0.30))


@dataclass(frozen=True)
class UACWorldConfig:
    """Settings of a repaired U-A-C world.

    Attributes
    ----------
    n_days : int
        Length of the daily series.
    attributes : tuple of (age, female, urban)
        One row per segment; segments have equal size.
    market_size : float
        Consumers in the market (all segments).
    alpha_ua, alpha_ac : float
        Baseline logits (the spec's repaired values: -6 and -5.5).
    hill_k, hill_slope : float
        Hill curve of spend over its mean (Diff-MMM: 0.5 and 2).
    spillover, spill_decay : float
        TV adstock (decay ``spill_decay``) added to brand search's scaled spend, times ``spillover``.
    base : float
        Organic conversions per day in the whole market (split equally across segments).
    dispersion : float
        Negative-binomial :math:`\\phi` of daily conversions per segment.
    initial_active : float
        Share of each segment activated before day 1.
    extra_links : tuple of (channel, transition, beta)
        Effects the default mask forbids (e.g. ``("tv", "ac", 0.8)``): a misspecified model's
        blind spot.
    name : str
        Label in tables.
    """

    n_days: int = 730
    attributes: tuple[tuple[float, float, float], ...] = SEGMENT_ATTRIBUTES
    market_size: float = 100_000.0
    alpha_ua: float = -6.0
    alpha_ac: float = -5.5
    hill_k: float = 0.5
    hill_slope: float = 2.0
    spillover: float = 0.5
    spill_decay: float = 0.6
    base: float = 50.0
    dispersion: float = 200.0
    initial_active: float = 0.15
    extra_links: tuple[tuple[str, str, float], ...] = field(default_factory=tuple)
    name: str = "uac"

    def __post_init__(self) -> None:
        if self.n_days < 8:
            raise ValueError(f"n_days must be at least 8, got {self.n_days}")
        if not self.attributes or any(len(a) != 3 for a in self.attributes):
            raise ValueError("attributes must be rows of (age, female, urban)")
        if self.market_size <= 0 or self.base < 0 or self.dispersion <= 0:
            raise ValueError("market_size and dispersion must be positive and base non-negative")
        for ch, tr, _ in self.extra_links:
            if ch not in CHANNELS or tr not in ("ua", "ac"):
                raise ValueError(f"extra link ({ch!r}, {tr!r}): channel must be one of {CHANNELS}, transition 'ua' or 'ac'")


@dataclass(frozen=True)
class UACWorld:
    """A simulated funnel: what is observed and what is true.

    Attributes
    ----------
    config : UACWorldConfig
    spend : pandas.DataFrame
        Daily spend ``(T, C)``.
    conversions : pandas.DataFrame
        Observed daily conversions per segment ``(T, K)`` (sum them for the total).
    sizes : numpy.ndarray
        Segment sizes ``(K,)``.
    attributes : numpy.ndarray
        Segment attributes ``(K, 3)``.
    truth : FunnelParams
        Every parameter of the generating funnel.
    true_mask : FunnelMask
        The links that are non-zero in the truth (the default mask plus ``extra_links``).
    true_share : pandas.Series
        Share of funnel conversions attributable to each channel (counterfactual removal).
    mean : numpy.ndarray
        Expected daily conversions per segment ``(K, T)`` (funnel plus base).
    """

    config: UACWorldConfig
    spend: pd.DataFrame
    conversions: pd.DataFrame
    sizes: np.ndarray
    attributes: np.ndarray
    truth: FunnelParams
    true_mask: FunnelMask
    true_share: pd.Series
    mean: np.ndarray


def simulate_spend(n_days: int, rng: np.random.Generator | np.random.RandomState) -> pd.DataFrame:
    """Diff-MMM's daily spend patterns (clipped at 0): TV with a yearly and a weekly cycle,
    display weekly, the two search channels noisy around a plan. The source's generator draws
    from a legacy ``RandomState``; the repaired worlds from a ``Generator``."""
    t = np.arange(n_days)
    tv = 50 + 30 * np.sin(2 * np.pi * t / 365) + 20 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 10, n_days)
    display = 30 + 15 * np.cos(2 * np.pi * t / 7) + rng.normal(0, 8, n_days)
    generic = 25 + rng.normal(0, 12, n_days)
    brand = 20 + rng.normal(0, 10, n_days)
    spend = np.clip(np.stack([tv, display, generic, brand], axis=1), 0.0, None)
    return pd.DataFrame(spend, columns=list(CHANNELS), index=pd.RangeIndex(n_days, name="day"))


def true_params(config: UACWorldConfig) -> tuple[FunnelParams, FunnelMask]:
    """The repaired funnel's parameters from the segment attributes (Chapter 2)."""
    attr = np.asarray(config.attributes, dtype=np.float64)
    age, female, urban = attr[:, 0], attr[:, 1], attr[:, 2]
    K, C = len(attr), len(CHANNELS)
    zero = np.zeros(K)
    beta_ua = np.stack([2.0 * (0.8 + 0.4 * age), 1.2 * (1.2 - 0.4 * age), 1.5 * (0.8 + 0.4 * urban), zero], axis=1)
    beta_ac = np.stack([zero, 0.3 + 0.3 * urban, 0.8 + 0.4 * urban, 1.5 + 0.5 * female], axis=1)
    mask = FunnelMask()
    ua, ac = list(mask.ua), list(mask.ac)
    for ch, tr, beta in config.extra_links:
        c = CHANNELS.index(ch)
        (beta_ua if tr == "ua" else beta_ac)[:, c] = beta
        (ua if tr == "ua" else ac)[c] = 1
    params = FunnelParams(
        alpha_ua=np.full(K, config.alpha_ua),
        alpha_ac=np.full(K, config.alpha_ac),
        forget=0.25 - 0.10 * age,
        beta_ua=beta_ua,
        beta_ac=beta_ac,
        spillover=config.spillover,
        spill_decay=config.spill_decay,
        base=np.full(K, config.base / K),
        hill_k=np.full(C, config.hill_k),
        hill_slope=np.full(C, config.hill_slope),
        dispersion=config.dispersion,
    )
    return params, FunnelMask(ua=tuple(ua), ac=tuple(ac))


def simulate_uac_world(config: UACWorldConfig = UACWorldConfig(), seed: int = 0) -> UACWorld:
    """Simulate the repaired funnel: spend, then expected and observed daily conversions.

    Examples
    --------
    >>> w = simulate_uac_world(UACWorldConfig(n_days=60), seed=1)
    >>> w.conversions.shape
    (60, 3)
    """
    rng = np.random.default_rng(seed)
    spend = simulate_spend(config.n_days, rng)
    params, mask = true_params(config)
    K = len(config.attributes)
    sizes = np.full(K, config.market_size / K)
    p = params.torch()
    x = torch.as_tensor(spend.to_numpy() / spend.to_numpy().mean(axis=0))
    sizes_t = torch.as_tensor(sizes)
    with torch.no_grad():
        pressure = media_pressure(x, p["hill_k"], p["hill_slope"], p["spillover"], p["spill_decay"])
        conv, _ = funnel(p, pressure, sizes_t, mask, config.initial_active)
        contrib = attribution(p, x, sizes_t, mask, config.initial_active).numpy()
    mean = conv.numpy() + params.base[:, None]
    phi = config.dispersion
    observed = rng.poisson(rng.gamma(phi, mean / phi))  # negative binomial as a gamma-Poisson mixture
    conversions = pd.DataFrame(observed.T.astype(np.float64), columns=[f"segment_{k + 1}" for k in range(K)],
                               index=spend.index)
    share = pd.Series(contrib / contrib.sum(), index=pd.Index(CHANNELS, name="channel"), name="share")
    return UACWorld(
        config=config,
        spend=spend,
        conversions=conversions,
        sizes=sizes,
        attributes=np.asarray(config.attributes, dtype=np.float64),
        truth=params,
        true_mask=mask,
        true_share=share,
        mean=mean,
    )


@dataclass(frozen=True)
class SourceDGP:
    """Diff-MMM's generator output: stocks and flows per segment, observed sales."""

    spend: pd.DataFrame
    unaware: np.ndarray  # (K, T)
    active: np.ndarray
    conversions: np.ndarray  # (K, T) flows
    sales: np.ndarray  # (T,)
    p_ua_total: np.ndarray  # (K, T) the summed "probabilities" of U -> A
    p_ac_total: np.ndarray


def simulate_source_dgp(n_days: int = 730, seed: int = 42, market_size: float = 100_000.0) -> SourceDGP:
    """Diff-MMM's data-generating process as its code is described in the spec (§1.2), bugs kept.

    Spend is scaled by its full-sample mean and put through Hill(γ=2, κ=0.5); each channel's
    "incremental probability" :math:`\\sigma(\\alpha + \\beta_c p_{c,t}) - \\sigma(\\alpha)` is computed
    separately and the flows are *added*, so the total U→A probability is about 2.7 and mass is
    created; converters leave the market for good.
    """
    rng = np.random.RandomState(seed)
    spend_df = simulate_spend(n_days, rng)
    spend = spend_df.to_numpy()
    x = spend / spend.mean(axis=0)
    pressure = x**2 / (x**2 + 0.5**2)
    attr = np.asarray(SEGMENT_ATTRIBUTES)
    age, female, urban = attr[:, 0], attr[:, 1], attr[:, 2]
    K = len(attr)
    b_ua = np.stack([16 * (0.8 + 0.4 * age), 10 * (1.2 - 0.4 * age), 12 * (0.8 + 0.4 * urban)], axis=1)  # tv, disp, gen
    b_ac = np.stack([0.5 + 0.5 * urban, 4 + urban, 12 + 2 * female], axis=1)  # disp, gen, brand
    lam = 0.25 - 0.10 * age
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    M = market_size / K
    U, A, C = np.zeros((K, n_days)), np.zeros((K, n_days)), np.zeros((K, n_days))
    U[:, 0], A[:, 0], C[:, 0] = 0.85 * M, 0.14 * M, 0.01 * M
    p_ua_tot, p_ac_tot = np.zeros((K, n_days)), np.zeros((K, n_days))
    p0 = sig(-3.5)
    for d in range(1, n_days):
        inc_ua = sig(-3.5 + b_ua * pressure[d, [0, 1, 2]]) - p0  # (K, 3)
        inc_ac = sig(-3.5 + b_ac * pressure[d, [1, 2, 3]]) - p0
        p_ua_tot[:, d] = p0 + inc_ua.sum(axis=1)
        p_ac_tot[:, d] = p0 + inc_ac.sum(axis=1)
        flow_ua = U[:, d - 1, None] * np.maximum(inc_ua, 0.0)
        flow_ac = A[:, d - 1, None] * np.maximum(inc_ac, 0.0)
        flow_ua0, flow_ac0 = U[:, d - 1] * p0, A[:, d - 1] * p0
        flow_au = lam * A[:, d - 1]
        total_ua = flow_ua.sum(axis=1) + flow_ua0
        total_ac = flow_ac.sum(axis=1) + flow_ac0
        U[:, d] = np.maximum(0.0, U[:, d - 1] - total_ua + flow_au)
        A[:, d] = np.maximum(0.0, A[:, d - 1] + total_ua - flow_au - total_ac)
        C[:, d] = total_ac
    level = 50 + C.sum(axis=0)
    sales = np.maximum(1.0, level + rng.normal(0, 1, n_days) * 0.1 * np.sqrt(level + 1))
    return SourceDGP(
        spend=spend_df,
        unaware=U,
        active=A,
        conversions=C,
        sales=sales,
        p_ua_total=p_ua_tot,
        p_ac_total=p_ac_tot,
    )
