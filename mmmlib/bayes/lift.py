r"""Lift tests: experiments that measure one channel's incremental effect, and how they enter the model.

A lift test changes one channel's spend by a fraction :math:`\delta` for a few periods (nationally,
or in some geos against the others) and measures the incremental target over those periods and
``post_periods`` after them (the carry-over), with a standard error. In the Bayesian model of
:mod:`mmmlib.bayes.model` each test is one more observation,

.. math::

    \widehat{\text{lift}}_k \sim \mathcal N\Big(\sum_{t \in W_k}\sum_{g \in G_k} \bar y_g\,\beta_{c_k g}
        \big[f_{c_k}\big((1 + \delta_k \mathbb 1_{t \in P_k})\,x_{c_k g}\big)_t - f_{c_k}(x_{c_k g})_t\big],\;
        \mathrm{se}_k^2\Big),

through the same adstock and saturation as the sales: :math:`P_k` is the test's period,
:math:`W_k` that period and its ``post_periods``, :math:`G_k` its geos, :math:`\bar y_g` the target
scale. :func:`simulate_lift_test` measures such a test in a simulated world, from its truth plus
noise.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmmlib.data import MediaDataset
from mmmlib.worlds.media import SimulatedWorld, true_contributions

__all__ = ["LiftDesign", "LiftTest", "added_spend", "lift_arrays", "plan_tests", "lift_roi_prior", "load_lift_tests", "simulate_lift_test", "true_lift"]


@dataclass(frozen=True)
class LiftTest:
    """One experiment on one channel.

    Attributes
    ----------
    channel : str
        The channel whose spend was changed.
    start, end : int
        The test's periods, ``start <= t < end``, as indices of the data the model is fitted to.
    spend_change : float
        The change of the channel's spend (and media) in those periods, a fraction (0.2: +20%;
        -1: switched off).
    lift : float
        The measured incremental target over the test's periods and ``post_periods`` after
        them, in target units (negative for a cut).
    se : float
        Standard error of ``lift``.
    geos : tuple of str, optional
        The geos where spend changed (a geo test); ``None``: everywhere (a national test).
    post_periods : int
        Periods after the test that the measurement still counts (carry-over).
    """

    channel: str
    start: int
    end: int
    spend_change: float
    lift: float
    se: float
    geos: tuple[str, ...] | None = None
    post_periods: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.start, int) and isinstance(self.end, int)) or not 0 <= self.start < self.end:
            raise ValueError(f"lift test on {self.channel!r}: need 0 <= start < end, got start={self.start}, end={self.end}")
        if not np.isfinite(self.spend_change) or self.spend_change <= -1.0 - 1e-12 or self.spend_change == 0.0:
            raise ValueError(f"lift test on {self.channel!r}: spend_change must be a non-zero fraction >= -1, "
                             f"got {self.spend_change}")
        if not (np.isfinite(self.se) and self.se > 0):
            raise ValueError(f"lift test on {self.channel!r}: se must be a positive number, got {self.se}")
        if not np.isfinite(self.lift):
            raise ValueError(f"lift test on {self.channel!r}: lift must be finite, got {self.lift}")
        if self.post_periods < 0:
            raise ValueError(f"lift test on {self.channel!r}: post_periods must be >= 0, got {self.post_periods}")
        if self.geos is not None:
            object.__setattr__(self, "geos", tuple(str(g) for g in self.geos))
            if not self.geos:
                raise ValueError(f"lift test on {self.channel!r}: geos must name at least one geo (None: national)")


def _geo_mask(test: LiftTest, geos: Sequence[str]) -> np.ndarray:
    if test.geos is None or not geos:
        return np.ones(max(len(geos), 1))
    unknown = sorted(set(test.geos) - set(geos))
    if unknown:
        raise ValueError(f"lift test on {test.channel!r}: unknown geos {unknown}; the data's geos are {list(geos)}")
    return np.array([g in test.geos for g in geos], dtype=np.float64)


def lift_arrays(tests: Sequence[LiftTest], channels: Sequence[str], n_periods: int, geos: Sequence[str] = ()
                ) -> dict[str, np.ndarray]:
    """The tests as arrays for the model, checked against the data they are fitted with.

    Returns
    -------
    dict
        ``channel`` (K,) channel indices; ``multiplier`` (T, K, G) media multipliers (1 outside a
        test's periods and geos); ``window`` (T, K) 1 on the periods a test measures; ``geo_mask``
        (K, G); ``lift`` and ``se`` (K,). ``G`` is 1 for national data.
    """
    if not tests:
        raise ValueError("lift_tests: give at least one LiftTest (or None)")
    G = max(len(geos), 1)
    K = len(tests)
    out = {"channel": np.zeros(K, dtype=np.int64), "multiplier": np.ones((n_periods, K, G)),
           "window": np.zeros((n_periods, K)), "geo_mask": np.zeros((K, G)), "lift": np.zeros(K), "se": np.zeros(K)}
    for k, test in enumerate(tests):
        if not isinstance(test, LiftTest):
            raise ValueError(f"lift_tests[{k}] is a {type(test).__name__}, not a LiftTest")
        if test.channel not in channels:
            raise ValueError(f"lift test {k}: unknown channel {test.channel!r}; the model's channels are {list(channels)}")
        if test.end > n_periods:
            raise ValueError(f"lift test {k} on {test.channel!r}: ends at period {test.end}, after the data's "
                             f"{n_periods} periods")
        mask = _geo_mask(test, geos)
        out["channel"][k] = list(channels).index(test.channel)
        out["multiplier"][test.start:test.end, k, :] = 1.0 + test.spend_change * mask[None, :]
        out["window"][test.start:min(test.end + test.post_periods, n_periods), k] = 1.0
        out["geo_mask"][k] = mask
        out["lift"][k], out["se"][k] = test.lift, test.se
    return out


def added_spend(test: LiftTest, data: MediaDataset) -> float:
    """The spend a test added (or removed): ``spend_change`` times the channel's spend over the
    test's periods (and geos), in the data's spend units."""
    c = list(data.channels).index(test.channel) if test.channel in data.channels else None
    if c is None:
        raise ValueError(f"lift test on {test.channel!r}: not a channel of the data {list(data.channels)}")
    spend = data.spend_array()[test.start:test.end, c]  # (P,) or (P, G)
    if spend.ndim == 2:
        spend = spend * _geo_mask(test, data.geos)[None, :]
    return float(test.spend_change * spend.sum())


def lift_roi_prior(test: LiftTest, data: MediaDataset, revenue_per_kpi: float = 1.0) -> tuple[float, float]:
    r"""A test turned into a LogNormal prior on its channel's ROI (the prior-only way of using it).

    The test's incremental ROI :math:`r = \text{lift} / \Delta\text{spend}` with standard error
    :math:`s = \text{se} / |\Delta\text{spend}|` becomes the LogNormal with that mean and sd:
    :math:`\sigma^2 = \log(1 + s^2 / r^2)`, :math:`\mu = \log r - \sigma^2 / 2`. This reads the
    test's *incremental* return as the channel's *average* ROI: the two are equal only for a
    channel without saturation, or for a test that switches the channel off (``spend_change=-1``)
    over a typical window. Chapter 8 measures what that costs against the likelihood way
    (``BayesianMMM.fit(lift_tests=...)``).

    Returns
    -------
    tuple of float
        ``(mu, sigma)``, for ``BayesianMMM(roi_prior_by_channel={channel: (mu, sigma)})``.
    """
    added = added_spend(test, data)
    if added == 0:
        raise ValueError(f"lift test on {test.channel!r}: the channel has no spend in periods "
                         f"{test.start}..{test.end - 1}, so the test measures no return on spend")
    r = revenue_per_kpi * test.lift / added
    s = revenue_per_kpi * test.se / abs(added)
    if not r > 0:
        raise ValueError(f"lift test on {test.channel!r}: measured lift {test.lift:.4g} has the opposite sign to "
                         f"its spend change ({test.spend_change:+g}); a negative return cannot centre a LogNormal "
                         "ROI prior (use the test in the likelihood instead)")
    sigma2 = float(np.log1p((s / r) ** 2))
    return float(np.log(r) - sigma2 / 2), float(np.sqrt(sigma2))


def true_lift(world: SimulatedWorld, channel: str, start: int, end: int, spend_change: float,
              geos: Sequence[str] | None = None, post_periods: int = 0) -> float:
    """The world's true incremental target of a test (no measurement noise)."""
    test = LiftTest(channel, start, end, spend_change, lift=0.0, se=1.0, geos=tuple(geos) if geos else None,
                    post_periods=post_periods)
    data = world.data
    arr = lift_arrays([test], data.channels, data.n_times, data.geos)
    multiplier = np.ones((data.n_times, len(data.channels), max(len(data.geos), 1)))
    multiplier[:, arr["channel"][0], :] = arr["multiplier"][:, 0, :]
    base = true_contributions(world)[:, arr["channel"][0], :]
    changed = true_contributions(world, multiplier)[:, arr["channel"][0], :]
    return float(((changed - base) * arr["window"][:, :1] * arr["geo_mask"][0][None, :]).sum())


def simulate_lift_test(world: SimulatedWorld, channel: str, start: int, periods: int, spend_change: float,
                       relative_se: float, seed: int, geos: Sequence[str] | None = None,
                       post_periods: int = 0) -> LiftTest:
    """A test run in a simulated world: the true lift plus Gaussian noise whose sd is
    ``relative_se`` of the true lift's size; the test reports that sd as its standard error."""
    if not relative_se > 0:
        raise ValueError(f"relative_se must be positive, got {relative_se}")
    truth = true_lift(world, channel, start, start + periods, spend_change, geos, post_periods)
    se = relative_se * abs(truth)
    if se == 0:
        raise ValueError(f"the test on {channel!r} has no true effect to measure (zero lift)")
    measured = truth + se * np.random.default_rng(seed).normal()
    return LiftTest(channel, start, start + periods, spend_change, float(measured), float(se),
                    tuple(geos) if geos else None, post_periods)


@dataclass(frozen=True)
class LiftDesign:
    """How an experiment is run: the same design on every channel tested.

    Attributes
    ----------
    spend_change : float
        The change of the channel's spend in the test weeks (0.2: +20%; -1: switched off).
    weeks : int
        Test length.
    relative_se : float
        Standard error of the measured lift, as a fraction of the true lift.
    post_weeks : int
        Weeks after the test that the measurement still counts (the carry-over).
    """

    spend_change: float = 0.2
    weeks: int = 4
    relative_se: float = 0.2
    post_weeks: int = 4

    def __post_init__(self) -> None:
        if not (np.isfinite(self.spend_change) and self.spend_change >= -1.0 and self.spend_change != 0.0):
            raise ValueError(f"LiftDesign.spend_change must be a non-zero fraction >= -1, got {self.spend_change}")
        if self.weeks < 1 or self.post_weeks < 0:
            raise ValueError(f"LiftDesign needs weeks >= 1 and post_weeks >= 0, got {self.weeks}, {self.post_weeks}")
        if not (np.isfinite(self.relative_se) and self.relative_se > 0):
            raise ValueError(f"LiftDesign.relative_se must be positive, got {self.relative_se}")

    @property
    def label(self) -> str:
        """E.g. ``+20% for 4 weeks, se 20%`` or ``switched off for 4 weeks, se 20%``."""
        size = "switched off" if self.spend_change == -1.0 else f"{self.spend_change:+.0%}"
        return f"{size} for {self.weeks} weeks, se {self.relative_se:.0%}"


def plan_tests(world: SimulatedWorld, channels: Sequence[str], design: LiftDesign, seed: int,
               last_period: int | None = None) -> list[LiftTest]:
    """Run ``design`` on each of ``channels`` in a simulated world, as a practitioner would.

    Each test's window is drawn at random (seeded by ``seed`` and the channel) among the
    windows, test and carry-over weeks inside the first ``last_period`` periods (the training
    data), in which the channel's spend is at least its median over all such windows: an
    experiment is run while the channel is on, not in a flight's gap. The measured lift is the
    world's true lift plus noise (:func:`simulate_lift_test`).
    """
    data = world.data
    n = data.n_times if last_period is None else int(last_period)
    span = design.weeks + design.post_weeks
    if n < span:
        raise ValueError(f"plan_tests: {n} periods are too few for a {design.weeks}-week test and "
                         f"{design.post_weeks} weeks after it")
    spend = data.spend_array()
    spend = spend.reshape(spend.shape[0], spend.shape[1], -1).sum(axis=-1)  # national total (T, C)
    tests = []
    for ch in channels:
        if ch not in data.channels:
            raise ValueError(f"plan_tests: unknown channel {ch!r}; the world's channels are {list(data.channels)}")
        c = list(data.channels).index(ch)
        starts = np.arange(0, n - span + 1)
        in_window = np.array([spend[s:s + design.weeks, c].sum() for s in starts])
        ok = starts[in_window >= np.median(in_window)]
        ok = ok[in_window[ok] > 0]
        rng = np.random.default_rng([seed, c])
        start = int(rng.choice(ok))
        tests.append(simulate_lift_test(world, ch, start, design.weeks, design.spend_change, design.relative_se,
                                        seed=int(rng.integers(2**31)), post_periods=design.post_weeks))
    return tests


LIFT_COLUMNS = ("channel", "start", "end", "spend_change", "lift", "se")


def load_lift_tests(path: str | Path, dates: Sequence) -> list[LiftTest]:
    """Read lift tests from a CSV, one row per test, against the data's periods.

    Columns ``channel``, ``start`` and ``end`` (the first and last date of the test, inclusive,
    both among ``dates``), ``spend_change`` (a fraction: 0.2 for +20%), ``lift`` (incremental
    target over the test and its post periods) and ``se``; optionally ``post_periods`` and
    ``geos`` (geo names separated by ``;``, empty for a national test). Every error names the
    file and the row.
    """
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"channel": str, "geos": str})
    except (OSError, ValueError) as err:
        raise ValueError(f"{path.name}: cannot read the lift tests ({err})") from None
    missing = [c for c in LIFT_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: missing columns {missing}; a lift-test file has {list(LIFT_COLUMNS)}")
    index = {pd.Timestamp(d): i for i, d in enumerate(pd.DatetimeIndex(dates))}
    tests = []
    for i, row in df.iterrows():
        where = f"{path.name}, row {i} (line {i + 2})"
        try:
            start, end = pd.Timestamp(row["start"]), pd.Timestamp(row["end"])
        except (ValueError, TypeError):
            raise ValueError(f"{where}: start and end must be dates, got {row['start']!r} and {row['end']!r}") from None
        for name, d in (("start", start), ("end", end)):
            if d not in index:
                raise ValueError(f"{where}: {name} date {d.date()} is not one of the data's periods")
        geos = row.get("geos")
        geos = tuple(g.strip() for g in str(geos).split(";") if g.strip()) if isinstance(geos, str) else None
        post = row.get("post_periods", 0)
        try:
            tests.append(LiftTest(str(row["channel"]), index[start], index[end] + 1, float(row["spend_change"]),
                                  float(row["lift"]), float(row["se"]), geos or None,
                                  0 if pd.isna(post) else int(post)))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}: {err}") from None
    if not tests:
        raise ValueError(f"{path.name}: no lift tests in the file")
    return tests
